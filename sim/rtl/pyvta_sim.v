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
    // Everything else lives one level down. Only this module's signals are made public
    // (--public-depth 1), and a public signal may be written through VPI at any time, so
    // the simulator re-evaluates, on every eval(), all logic that reads one. With the wires
    // between the accelerator and the DRAM model at this level, that was most of the
    // design, the 256 multipliers included (about 40 % of the run time).
    pyvta_sim_body #(.DW(DW), .IDW(IDW), .LITE_AW(LITE_AW), .LOG_WORDS(LOG_WORDS)) body (
        .clk(core_clk),
        .rst(rst),
        .interrupt(interrupt),
        .s_axi_control_awaddr(s_axi_control_awaddr),
        .s_axi_control_awvalid(s_axi_control_awvalid),
        .s_axi_control_awready(s_axi_control_awready),
        .s_axi_control_wdata(s_axi_control_wdata),
        .s_axi_control_wstrb(s_axi_control_wstrb),
        .s_axi_control_wvalid(s_axi_control_wvalid),
        .s_axi_control_wready(s_axi_control_wready),
        .s_axi_control_bresp(s_axi_control_bresp),
        .s_axi_control_bvalid(s_axi_control_bvalid),
        .s_axi_control_bready(s_axi_control_bready),
        .s_axi_control_araddr(s_axi_control_araddr),
        .s_axi_control_arvalid(s_axi_control_arvalid),
        .s_axi_control_arready(s_axi_control_arready),
        .s_axi_control_rdata(s_axi_control_rdata),
        .s_axi_control_rresp(s_axi_control_rresp),
        .s_axi_control_rvalid(s_axi_control_rvalid),
        .s_axi_control_rready(s_axi_control_rready),
        .dram_base(dram_base),
        .dram_latency(dram_latency),
        .dram_stall(dram_stall),
        .dram_seed(dram_seed),
        .dram_load(dram_load),
        .dram_dump(dram_dump),
        .dram_clear_words(dram_clear_words),
        .dram_wmin(dram_wmin),
        .dram_wmax(dram_wmax),
        .dram_written(dram_written),
        .dram_protocol_errors(dram_protocol_errors),
        .dram_beats_read(dram_beats_read),
        .dram_beats_written(dram_beats_written)
    );
endmodule

module pyvta_sim_body #(
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
    wire core_clk = clk;
    // Every testbench input is registered here, for the same reason: logic that reads a
    // top-level input combinationally is re-evaluated on every eval() (twice per cycle with
    // an external clock). The accelerator's next-state logic all reads `rst`, its start
    // logic the AXI4-Lite inputs, and the AXI READY/VALID logic the DRAM model's `stall`.
    // Registered, they add a cycle of delay, which the testbench covers (reset is held for
    // several cycles, load/dump are pulses set up beforehand, and the AXI4-Lite channels go
    // through register slices, which keep the handshakes exact).
    reg rst_q = 1'b1;
    reg [31:0] base_q, seed_q, clear_q;
    reg [15:0] latency_q;
    reg [7:0] stall_q;
    reg load_q = 1'b0, dump_q = 1'b0;
    always @(posedge core_clk) begin
        rst_q <= rst;
        base_q <= dram_base;
        seed_q <= dram_seed;
        clear_q <= dram_clear_words;
        latency_q <= dram_latency;
        stall_q <= dram_stall;
        load_q <= dram_load;
        dump_q <= dram_dump;
    end

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

    // AXI4-Lite: one register slice per channel between the testbench and the accelerator.
    wire [LITE_AW-1:0] l_awaddr, l_araddr;
    wire l_awvalid, l_awready, l_wvalid, l_wready, l_bvalid, l_bready;
    wire l_arvalid, l_arready, l_rvalid, l_rready;
    wire [31:0] l_wdata, l_rdata;
    wire [3:0] l_wstrb;
    wire [1:0] l_bresp, l_rresp;
    pyvta_reg_slice #(.W(LITE_AW)) aw_slice (
        .clk(core_clk), .rst(rst_q),
        .s_valid(s_axi_control_awvalid), .s_ready(s_axi_control_awready),
        .s_data(s_axi_control_awaddr),
        .m_valid(l_awvalid), .m_ready(l_awready), .m_data(l_awaddr));
    pyvta_reg_slice #(.W(36)) w_slice (
        .clk(core_clk), .rst(rst_q),
        .s_valid(s_axi_control_wvalid), .s_ready(s_axi_control_wready),
        .s_data({s_axi_control_wstrb, s_axi_control_wdata}),
        .m_valid(l_wvalid), .m_ready(l_wready), .m_data({l_wstrb, l_wdata}));
    pyvta_reg_slice #(.W(2)) b_slice (
        .clk(core_clk), .rst(rst_q),
        .s_valid(l_bvalid), .s_ready(l_bready), .s_data(l_bresp),
        .m_valid(s_axi_control_bvalid), .m_ready(s_axi_control_bready),
        .m_data(s_axi_control_bresp));
    pyvta_reg_slice #(.W(LITE_AW)) ar_slice (
        .clk(core_clk), .rst(rst_q),
        .s_valid(s_axi_control_arvalid), .s_ready(s_axi_control_arready),
        .s_data(s_axi_control_araddr),
        .m_valid(l_arvalid), .m_ready(l_arready), .m_data(l_araddr));
    pyvta_reg_slice #(.W(34)) r_slice (
        .clk(core_clk), .rst(rst_q),
        .s_valid(l_rvalid), .s_ready(l_rready), .s_data({l_rresp, l_rdata}),
        .m_valid(s_axi_control_rvalid), .m_ready(s_axi_control_rready),
        .m_data({s_axi_control_rresp, s_axi_control_rdata}));

    pyvta_top accel (
        .clk(core_clk), .rst(rst_q), .interrupt(interrupt),
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
        .s_axi_control_awaddr(l_awaddr), .s_axi_control_awprot(3'b000),
        .s_axi_control_awvalid(l_awvalid), .s_axi_control_awready(l_awready),
        .s_axi_control_wdata(l_wdata), .s_axi_control_wstrb(l_wstrb),
        .s_axi_control_wvalid(l_wvalid), .s_axi_control_wready(l_wready),
        .s_axi_control_bresp(l_bresp), .s_axi_control_bvalid(l_bvalid),
        .s_axi_control_bready(l_bready),
        .s_axi_control_araddr(l_araddr), .s_axi_control_arprot(3'b000),
        .s_axi_control_arvalid(l_arvalid), .s_axi_control_arready(l_arready),
        .s_axi_control_rdata(l_rdata), .s_axi_control_rresp(l_rresp),
        .s_axi_control_rvalid(l_rvalid), .s_axi_control_rready(l_rready)
    );

    pyvta_axi_dram #(.DW(DW), .IDW(IDW), .LOG_WORDS(LOG_WORDS)) dram (
        .clk(core_clk), .rst(rst_q), .base(base_q), .latency(latency_q), .stall(stall_q),
        .seed(seed_q), .load_req(load_q), .dump_req(dump_q),
        .clear_words(clear_q), .wmin(dram_wmin), .wmax(dram_wmax),
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

// A one-entry register slice for a VALID/READY channel: every output is a register (or the
// inverse of one), so no combinational path runs from s_* to m_* or back. Half throughput,
// which is plenty for the AXI4-Lite control port.
module pyvta_reg_slice #(
    parameter W = 32
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         s_valid,
    output wire         s_ready,
    input  wire [W-1:0] s_data,
    output reg          m_valid,
    input  wire         m_ready,
    output reg  [W-1:0] m_data
);
    assign s_ready = !m_valid;
    always @(posedge clk) begin
        if (rst) begin
            m_valid <= 1'b0;
        end else if (!m_valid) begin
            m_valid <= s_valid;
            m_data <= s_data;
        end else if (m_ready) begin
            m_valid <= 1'b0;
        end
    end
endmodule
