// Simulation top level: the generated accelerator (module pyvta_top) wired to the AXI4 DRAM
// model. The testbench drives the AXI4-Lite port and the DRAM model's control inputs.
`timescale 1ns/1ps
module pyvta_sim #(
    parameter DW = 64,
    parameter IDW = 2,
    parameter LITE_AW = 7,
    parameter LOG_WORDS = 21
) (
    input  wire clk,
    input  wire rst,
    output wire interrupt,
    // AXI4-Lite control port, driven by the testbench
    input  wire [LITE_AW-1:0] s_axi_control_awaddr,
    input  wire               s_axi_control_awvalid,
    output wire               s_axi_control_awready,
    input  wire [31:0]        s_axi_control_wdata,
    input  wire [3:0]         s_axi_control_wstrb,
    input  wire               s_axi_control_wvalid,
    output wire               s_axi_control_wready,
    output wire [1:0]         s_axi_control_bresp,
    output wire               s_axi_control_bvalid,
    input  wire               s_axi_control_bready,
    input  wire [LITE_AW-1:0] s_axi_control_araddr,
    input  wire               s_axi_control_arvalid,
    output wire               s_axi_control_arready,
    output wire [31:0]        s_axi_control_rdata,
    output wire [1:0]         s_axi_control_rresp,
    output wire               s_axi_control_rvalid,
    input  wire               s_axi_control_rready,
    // DRAM model control
    input  wire [31:0] dram_base,
    input  wire [15:0] dram_latency,
    input  wire [7:0]  dram_stall,
    input  wire [31:0] dram_seed,
    input  wire        dram_load,
    input  wire        dram_dump,
    input  wire [31:0] dram_clear_words,
    output wire [31:0] dram_wmin,
    output wire [31:0] dram_wmax,
    output wire        dram_written,
    output wire [31:0] dram_protocol_errors,
    output wire [31:0] dram_beats_read,
    output wire [31:0] dram_beats_written
);
    // The clock: from the testbench (cocotb's Clock) or, with PYVTA_INTERNAL_CLOCK defined,
    // generated here, so the simulator never returns to the VPI layer between edges.
`ifdef PYVTA_INTERNAL_CLOCK
    reg clk_gen = 1'b0;
    always #5 clk_gen = ~clk_gen;
    wire core_clk = clk_gen;
`else
    wire core_clk = clk;
`endif
    wire [IDW-1:0] awid, bid, arid, rid;
    wire [31:0] awaddr, araddr;
    wire [7:0] awlen, arlen;
    wire [2:0] awsize, arsize, awprot, arprot;
    wire [1:0] awburst, arburst, bresp, rresp;
    wire [3:0] awcache, arcache, awqos, arqos;
    wire awlock, arlock;
    wire awvalid, awready, wlast, wvalid, wready, bvalid, bready;
    wire arvalid, arready, rlast, rvalid, rready;
    wire [DW-1:0] wdata, rdata;
    wire [DW/8-1:0] wstrb;

    pyvta_top accel (
        .clk(core_clk), .rst(rst), .interrupt(interrupt),
        .m_axi_awid(awid), .m_axi_awaddr(awaddr), .m_axi_awlen(awlen), .m_axi_awsize(awsize),
        .m_axi_awburst(awburst), .m_axi_awlock(awlock), .m_axi_awcache(awcache),
        .m_axi_awprot(awprot), .m_axi_awqos(awqos), .m_axi_awvalid(awvalid),
        .m_axi_awready(awready),
        .m_axi_wdata(wdata), .m_axi_wstrb(wstrb), .m_axi_wlast(wlast), .m_axi_wvalid(wvalid),
        .m_axi_wready(wready),
        .m_axi_bid(bid), .m_axi_bresp(bresp), .m_axi_bvalid(bvalid), .m_axi_bready(bready),
        .m_axi_arid(arid), .m_axi_araddr(araddr), .m_axi_arlen(arlen), .m_axi_arsize(arsize),
        .m_axi_arburst(arburst), .m_axi_arlock(arlock), .m_axi_arcache(arcache),
        .m_axi_arprot(arprot), .m_axi_arqos(arqos), .m_axi_arvalid(arvalid),
        .m_axi_arready(arready),
        .m_axi_rid(rid), .m_axi_rdata(rdata), .m_axi_rresp(rresp), .m_axi_rlast(rlast),
        .m_axi_rvalid(rvalid), .m_axi_rready(rready),
        .s_axi_control_awaddr(s_axi_control_awaddr), .s_axi_control_awprot(3'b000),
        .s_axi_control_awvalid(s_axi_control_awvalid),
        .s_axi_control_awready(s_axi_control_awready),
        .s_axi_control_wdata(s_axi_control_wdata), .s_axi_control_wstrb(s_axi_control_wstrb),
        .s_axi_control_wvalid(s_axi_control_wvalid),
        .s_axi_control_wready(s_axi_control_wready),
        .s_axi_control_bresp(s_axi_control_bresp), .s_axi_control_bvalid(s_axi_control_bvalid),
        .s_axi_control_bready(s_axi_control_bready),
        .s_axi_control_araddr(s_axi_control_araddr), .s_axi_control_arprot(3'b000),
        .s_axi_control_arvalid(s_axi_control_arvalid),
        .s_axi_control_arready(s_axi_control_arready),
        .s_axi_control_rdata(s_axi_control_rdata), .s_axi_control_rresp(s_axi_control_rresp),
        .s_axi_control_rvalid(s_axi_control_rvalid),
        .s_axi_control_rready(s_axi_control_rready)
    );

    pyvta_axi_dram #(.DW(DW), .IDW(IDW), .LOG_WORDS(LOG_WORDS)) dram (
        .clk(core_clk), .rst(rst), .base(dram_base), .latency(dram_latency), .stall(dram_stall),
        .seed(dram_seed), .load_req(dram_load), .dump_req(dram_dump),
        .clear_words(dram_clear_words), .wmin(dram_wmin), .wmax(dram_wmax),
        .written(dram_written), .protocol_errors(dram_protocol_errors),
        .beats_read(dram_beats_read), .beats_written(dram_beats_written),
        .awid(awid), .awaddr(awaddr), .awlen(awlen), .awsize(awsize), .awburst(awburst),
        .awvalid(awvalid), .awready(awready),
        .wdata(wdata), .wstrb(wstrb), .wlast(wlast), .wvalid(wvalid), .wready(wready),
        .bid(bid), .bresp(bresp), .bvalid(bvalid), .bready(bready),
        .arid(arid), .araddr(araddr), .arlen(arlen), .arsize(arsize), .arburst(arburst),
        .arvalid(arvalid), .arready(arready),
        .rid(rid), .rdata(rdata), .rresp(rresp), .rlast(rlast), .rvalid(rvalid),
        .rready(rready)
    );
endmodule
