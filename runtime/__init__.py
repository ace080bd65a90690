"""pyvta.runtime"""
