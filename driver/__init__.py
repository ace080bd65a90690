"""pyvta.driver"""
