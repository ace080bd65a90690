// AXI4 slave DRAM model for RTL simulation of pyvta (hand-written, simulation only).
//
// Everything per cycle and per beat happens here, inside the simulator, so the Python
// testbench only loads an image, starts the accelerator and waits for its interrupt.
//
// * Memory: 2**LOG_WORDS words of DW bits mapped at byte address `base`. An access outside it
//   answers DECERR (reads return 0, writes are dropped).
// * Loading: a cycle with `load_req` high zeroes words [0, clear_words) and then reads the
//   file named by plusarg +dram_in=<file> with $readmemh (sparse "@addr" lines allowed).
// * Dumping: a cycle with `dump_req` high writes words [wmin, wmax] (the range written since
//   the last load) to the file named by plusarg +dram_out=<file> with $writememh.
// * Timing: every burst's first R beat and every B response come `latency` cycles after the
//   address (or last W beat) was accepted; bursts are returned in acceptance order (legal
//   for any mix of IDs). Each channel stalls at random: a 32-bit xorshift LFSR seeded by
//   `seed` at load time drops READY/VALID when its byte for that channel is below `stall`
//   (so stall = 0 never stalls, 128 stalls about half the cycles).
// * `protocol_errors` counts WLAST mismatches and unsupported burst types/sizes.
`timescale 1ns/1ps
module pyvta_axi_dram #(
    parameter DW = 64,
    parameter IDW = 2,
    parameter LOG_WORDS = 21,
    parameter QD = 16
) (
    input  wire clk,
    input  wire rst,
    input  wire [31:0] base,
    input  wire [15:0] latency,
    input  wire [7:0]  stall,
    input  wire [31:0] seed,
    input  wire        load_req,
    input  wire        dump_req,
    input  wire [31:0] clear_words,
    output reg  [31:0] wmin,
    output reg  [31:0] wmax,
    output reg         written,
    output reg  [31:0] protocol_errors,
    output reg  [31:0] beats_read,
    output reg  [31:0] beats_written,

    input  wire [IDW-1:0] awid,
    input  wire [31:0]    awaddr,
    input  wire [7:0]     awlen,
    input  wire [2:0]     awsize,
    input  wire [1:0]     awburst,
    input  wire           awvalid,
    output wire           awready,
    input  wire [DW-1:0]  wdata,
    input  wire [DW/8-1:0] wstrb,
    input  wire           wlast,
    input  wire           wvalid,
    output wire           wready,
    output wire [IDW-1:0] bid,
    output wire [1:0]     bresp,
    output wire           bvalid,
    input  wire           bready,
    input  wire [IDW-1:0] arid,
    input  wire [31:0]    araddr,
    input  wire [7:0]     arlen,
    input  wire [2:0]     arsize,
    input  wire [1:0]     arburst,
    input  wire           arvalid,
    output wire           arready,
    output wire [IDW-1:0] rid,
    output wire [DW-1:0]  rdata,
    output wire [1:0]     rresp,
    output wire           rlast,
    output wire           rvalid,
    input  wire           rready
);
    localparam WORDS = 1 << LOG_WORDS;
    localparam LB = $clog2(DW / 8);
    localparam QB = $clog2(QD);

    reg [DW-1:0] mem [0:WORDS-1];
    reg [8*512-1:0] fin, fout;
    integer i;
    initial begin
        if (!$value$plusargs("dram_in=%s", fin)) fin = "dram_in.hex";
        if (!$value$plusargs("dram_out=%s", fout)) fout = "dram_out.hex";
    end

    reg [31:0] now;
    reg [31:0] lfsr;
    wire [31:0] lfsr_t1 = lfsr ^ (lfsr << 13);
    wire [31:0] lfsr_t2 = lfsr_t1 ^ (lfsr_t1 >> 17);
    wire [31:0] lfsr_next = lfsr_t2 ^ (lfsr_t2 << 5);
    wire st_ar = lfsr[7:0] < stall;
    wire st_r  = lfsr[15:8] < stall;
    wire st_aw = lfsr[23:16] < stall;
    wire st_w  = lfsr[31:24] < stall;
    wire st_b  = lfsr[11:4] < stall;

    // Word index of a byte address, and whether a burst lies inside the memory.
    function [31:0] word_of(input [31:0] addr);
        word_of = (addr - base) >> LB;
    endfunction
    function in_range(input [31:0] addr, input [7:0] len);
        in_range = (addr >= base) && ((((addr - base) >> LB) + len) < WORDS);
    endfunction

    // ---- read address queue -------------------------------------------------------------
    reg [31:0]    arq_word [0:QD-1];
    reg [7:0]     arq_len  [0:QD-1];
    reg [IDW-1:0] arq_id   [0:QD-1];
    reg           arq_bad  [0:QD-1];
    reg [31:0]    arq_t    [0:QD-1];
    reg [QB-1:0]  arq_head, arq_tail;
    reg [QB:0]    arq_cnt;
    assign arready = (arq_cnt != QD) && !st_ar;
    wire ar_fire = arvalid && arready;

    reg           r_busy, rvalid_r, r_bad;
    reg [31:0]    r_word;
    reg [8:0]     r_left;
    reg [IDW-1:0] r_id;
    assign rvalid = rvalid_r;
    assign rid = r_id;
    assign rlast = (r_left == 1);
    assign rresp = r_bad ? 2'b11 : 2'b00;
    assign rdata = r_bad ? {DW{1'b0}} : mem[r_word[LOG_WORDS-1:0]];
    wire r_fire = rvalid_r && rready;
    wire r_next = (arq_cnt != 0) && (now >= arq_t[arq_head]);
    wire r_load = r_next && (!r_busy || (r_fire && r_left == 1));

    // ---- write address, data, response --------------------------------------------------
    reg [31:0]    awq_word [0:QD-1];
    reg [7:0]     awq_len  [0:QD-1];
    reg [IDW-1:0] awq_id   [0:QD-1];
    reg           awq_bad  [0:QD-1];
    reg [QB-1:0]  awq_head, awq_tail;
    reg [QB:0]    awq_cnt;
    reg [8:0]     w_off;
    assign awready = (awq_cnt != QD) && !st_aw;
    wire aw_fire = awvalid && awready;

    reg [IDW-1:0] bq_id  [0:QD-1];
    reg           bq_bad [0:QD-1];
    reg [31:0]    bq_t   [0:QD-1];
    reg [QB-1:0]  bq_head, bq_tail;
    reg [QB:0]    bq_cnt;
    reg           b_shown;
    assign wready = (awq_cnt != 0) && (bq_cnt != QD) && !st_w;
    wire w_fire = wvalid && wready;
    wire w_last_beat = (w_off == {1'b0, awq_len[awq_head]});
    assign bvalid = (bq_cnt != 0) && (now >= bq_t[bq_head]) && (b_shown || !st_b);
    assign bid = bq_id[bq_head];
    assign bresp = bq_bad[bq_head] ? 2'b11 : 2'b00;
    wire b_fire = bvalid && bready;

    wire [DW-1:0] wmask;
    genvar g;
    generate
        for (g = 0; g < DW / 8; g = g + 1) begin : strobe
            assign wmask[8*g +: 8] = {8{wstrb[g]}};
        end
    endgenerate
    wire [31:0] w_word = awq_word[awq_head] + w_off;

    always @(posedge clk) begin
        if (rst) begin
            now <= 0;
            lfsr <= 32'h1;
            arq_head <= 0; arq_tail <= 0; arq_cnt <= 0;
            awq_head <= 0; awq_tail <= 0; awq_cnt <= 0;
            bq_head <= 0; bq_tail <= 0; bq_cnt <= 0;
            r_busy <= 0; rvalid_r <= 0; r_bad <= 0; r_left <= 0; r_word <= 0; r_id <= 0;
            w_off <= 0; b_shown <= 0;
            protocol_errors <= 0; beats_read <= 0; beats_written <= 0;
            written <= 0; wmin <= 0; wmax <= 0;
        end else begin
            now <= now + 1;
            lfsr <= lfsr_next;
            if (load_req) begin
                for (i = 0; i < WORDS && i < clear_words; i = i + 1)
                    mem[i] = {DW{1'b0}};
                $readmemh(fin, mem);
                written <= 0;
                lfsr <= (seed == 0) ? 32'h1 : seed;
                protocol_errors <= 0; beats_read <= 0; beats_written <= 0;
            end
            if (dump_req && written)
                $writememh(fout, mem, wmin, wmax);

            // read address
            if (ar_fire) begin
                arq_word[arq_tail] <= word_of(araddr);
                arq_len[arq_tail] <= arlen;
                arq_id[arq_tail] <= arid;
                arq_bad[arq_tail] <= !in_range(araddr, arlen);
                arq_t[arq_tail] <= now + latency;
                arq_tail <= arq_tail + 1;
                if (arburst != 2'b01 || arsize != LB) protocol_errors <= protocol_errors + 1;
            end
            arq_cnt <= arq_cnt + ar_fire - r_load;
            // read data
            if (r_fire) beats_read <= beats_read + 1;
            if (r_load) begin
                r_busy <= 1;
                r_word <= arq_word[arq_head];
                r_left <= arq_len[arq_head] + 1;
                r_id <= arq_id[arq_head];
                r_bad <= arq_bad[arq_head];
                arq_head <= arq_head + 1;
                rvalid_r <= !st_r;
            end else if (r_fire && r_left == 1) begin
                r_busy <= 0;
                rvalid_r <= 0;
            end else if (r_fire) begin
                r_left <= r_left - 1;
                r_word <= r_word + 1;
                rvalid_r <= !st_r;
            end else if (r_busy && !rvalid_r) begin
                rvalid_r <= !st_r;
            end

            // write address
            if (aw_fire) begin
                awq_word[awq_tail] <= word_of(awaddr);
                awq_len[awq_tail] <= awlen;
                awq_id[awq_tail] <= awid;
                awq_bad[awq_tail] <= !in_range(awaddr, awlen);
                awq_tail <= awq_tail + 1;
                if (awburst != 2'b01 || awsize != LB) protocol_errors <= protocol_errors + 1;
            end
            awq_cnt <= awq_cnt + aw_fire - (w_fire && w_last_beat);
            // write data
            if (w_fire) begin
                beats_written <= beats_written + 1;
                if (wlast != w_last_beat) protocol_errors <= protocol_errors + 1;
                if (!awq_bad[awq_head]) begin
                    mem[w_word[LOG_WORDS-1:0]] = (mem[w_word[LOG_WORDS-1:0]] & ~wmask)
                                               | (wdata & wmask);
                    if (!written || w_word < wmin) wmin <= w_word;
                    if (!written || w_word > wmax) wmax <= w_word;
                    written <= 1;
                end
                if (w_last_beat) begin
                    w_off <= 0;
                    awq_head <= awq_head + 1;
                    bq_id[bq_tail] <= awq_id[awq_head];
                    bq_bad[bq_tail] <= awq_bad[awq_head];
                    bq_t[bq_tail] <= now + latency;
                    bq_tail <= bq_tail + 1;
                end else begin
                    w_off <= w_off + 1;
                end
            end
            // write response
            bq_cnt <= bq_cnt + (w_fire && w_last_beat) - b_fire;
            if (b_fire) begin
                bq_head <= bq_head + 1;
                b_shown <= 0;
            end else if (bvalid) begin
                b_shown <= 1;
            end
        end
    end
endmodule
