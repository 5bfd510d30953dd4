//! Instruction-level tests of the reference engine: results and cycle
//! counts of small single-purpose programs, and the errors a broken program
//! gets (checks, faults, deadlocks, the cycle limit).

use wafer_emulator::{Arch, Inputs, Pe, Program, RunConfig, RunError, RunResult, asm};

fn program(src: &str) -> Program {
    asm::parse(src, "test.wsm").unwrap_or_else(|e| panic!("{e}"))
}

fn run_on(src: &str, arch: &Arch) -> Result<(Program, RunResult), RunError> {
    let p = program(src);
    let cfg = RunConfig {
        max_cycles: 100_000,
        ..RunConfig::default()
    };
    let r = wafer_emulator::run(&p, arch, &Inputs::new(), &cfg)?;
    Ok((p, r))
}

fn run(src: &str) -> (Program, RunResult) {
    run_on(src, &Arch::wse3()).unwrap_or_else(|e| panic!("{e}"))
}

fn err(src: &str) -> String {
    match run_on(src, &Arch::wse3()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A one-PE program whose main task runs `body`, with the given buffers.
fn one_pe(buffers: &str, body: &str) -> String {
    format!(
        ".grid 1x1\n.code k\n{buffers}\n  .task main local active\nmain:\n{body}\n  end\n.end\n.place k 0,0 1x1\n"
    )
}

fn buf(p: &Program, r: &RunResult, name: &str) -> Vec<f32> {
    r.read_buffer(p, Pe::new(0, 0), name).unwrap()
}

#[test]
fn a_scalar_loop_runs_one_instruction_per_cycle() {
    // sum = 1 + 2 + ... + 10, stored with stf.
    let src = one_pe(
        "  .buffer out f32[1]",
        "  li r1, 1\n  lf f1, 0\nloop:\n  itof f2, r1\n  fadd f1, f1, f2\n  add r1, r1, 1\n  bge r1, 11, done\n  jmp loop\ndone:\n  stf out[0], f1",
    );
    let (p, r) = run(&src);
    assert_eq!(buf(&p, &r, "out"), vec![55.0]);
    // Switch 2 (first instruction at cycle 2), 2 setup, 10 iterations of 5
    // but the last skips the jmp, stf, end: the run ends one cycle after.
    let a = Arch::wse3();
    let want = a.task_switch_cycles as u64 + 2 + 10 * 5 - 1 + 2;
    assert_eq!(r.cycles, want);
    assert_eq!(
        r.stats.pe.scalar_cycles[0],
        want - a.task_switch_cycles as u64
    );
}

#[test]
fn integer_and_float_scalar_ops() {
    let src = one_pe(
        "  .buffer i i32[6]\n  .buffer f f32[5]",
        "  li r1, -7\n  li r2, 3\n  mul r3, r1, r2\n  st i[0], r3\n  shr r3, r1, 1\n  st i[1], r3\n  xor r3, r1, r2\n  st i[2], r3\n  min r3, r1, r2\n  st i[3], r3\n  li r4, 1\n  shl r3, r4, 31\n  st i[4], r3\n  lf f1, 2.5\n  ftoi r5, f1\n  st i[5], r5\n  lf f2, 16\n  frsqrt f3, f2\n  stf f[0], f3\n  fdiv f3, f1, f2\n  stf f[1], f3\n  fneg f3, f1\n  stf f[2], f3\n  fexp f3, f1\n  stf f[3], f3\n  fmin f3, f1, f2\n  stf f[4], f3",
    );
    let (p, r) = run(&src);
    assert_eq!(
        buf(&p, &r, "i"),
        vec![-21.0, -4.0, (-7i32 ^ 3) as f32, -7.0, i32::MIN as f32, 2.0]
    );
    assert_eq!(
        buf(&p, &r, "f"),
        vec![0.25, 2.5 / 16.0, -2.5, 2.5f32.exp(), 2.5]
    );
}

#[test]
fn vector_rates_follow_lanes_and_memory_ports() {
    let a = Arch::wse3();
    let rate = |dt: &str, op: &str, n: u32| {
        let src = one_pe(
            &format!("  .buffer a {dt}[{n}]\n  .buffer b {dt}[{n}]\n  .buffer y {dt}[{n}]"),
            &format!("  {op}.{dt} y, a, b"),
        );
        run(&src).1.stats.pe.vector_cycles[0]
    };
    // Two 64-bit read ports and one 64-bit write port (Hot Chips 34): a
    // port access moves 4 contiguous 16-bit halves.
    // f32 add: 4 lanes; two f32 reads per element are 4 halves of the 8
    // the read ports move, one f32 write 2 of the write port's 4: 2 per cycle.
    assert_eq!(rate("f32", "vfadd", 16), 8);
    // f16 contiguous: 2 halves read, 1 written per element: 4 per cycle
    // (the 8 lanes wait on memory).
    assert_eq!(rate("f16", "vfadd", 16), 4);
    assert_eq!(rate("bf16", "vfmul", 15), 4);
    // Three f32 vector sources read 6 halves per element (4/3 per cycle),
    // but an f32 FMAC has 1 lane: 1 per cycle.
    let src = one_pe(
        "  .buffer a f32[12]\n  .buffer b f32[12]\n  .buffer c f32[12]",
        "  vfmac.f32 a, a, b, c",
    );
    assert_eq!(run(&src).1.stats.pe.vector_cycles[0], 12);
    // A mixed-precision dot (f16 × f16, f32 sum into a register): lanes
    // min(f16, f32 add) = 4, and 2 halves read per element: 4 per cycle.
    let src = one_pe(
        "  .buffer a f16[32]\n  .buffer b f16[32]",
        "  vdot.f32 f1, a, b",
    );
    assert_eq!(run(&src).1.stats.pe.vector_cycles[0], 8);
    // A strided 16-bit operand takes a whole port access per element: 2
    // reads per cycle, however narrow the element.
    let src = one_pe(
        "  .buffer a f16[16]\n  .buffer y f16[8]",
        "  vmov.f16 y, a[0, 8, 2]",
    );
    assert_eq!(run(&src).1.stats.pe.vector_cycles[0], 4);
    // The same with f32 operands is an f32 FMAC: 1 lane.
    let src = one_pe(
        "  .buffer a f32[32]\n  .buffer b f32[32]",
        "  vdot.f32 f1, a, b",
    );
    assert_eq!(run(&src).1.stats.pe.vector_cycles[0], 32);
    // A 16-bit product computed in f32 into a 16-bit buffer: the ports
    // allow 4 per cycle, and the mixed rule gives 4 lanes instead of the f32
    // FMAC's 1.
    let src = one_pe(
        "  .buffer a f16[32]\n  .buffer y f16[32]",
        "  vfmul.f32 y, a, 2.0",
    );
    assert_eq!(run(&src).1.stats.pe.vector_cycles[0], 8);
    // exp: special_fn_cycles per element.
    let src = one_pe("  .buffer a f32[8]", "  vexp.f32 a, a");
    assert_eq!(
        run(&src).1.stats.pe.vector_cycles[0],
        8 * a.special_fn_cycles as u64
    );
    // Total time: issue at cycle S, start 1 + I later, two f32 elements
    // per cycle (the 64-bit write port), `end` in the cycle of the last.
    let src = one_pe(
        "  .buffer a f32[10]\n  .buffer y f32[10]",
        "  vmov.f32 y, a",
    );
    let r = run(&src).1;
    assert_eq!(
        r.cycles,
        (a.task_switch_cycles + 1 + a.vector_issue_cycles) as u64 + 5
    );
    // The same machine with 32-bit ports (the model before Hot Chips 34
    // was read): half the memory-bound rates.
    let narrow = Arch::from_text("base = \"wse3\"\nmem_port_bits = 32\n", "n.toml").unwrap();
    let src = one_pe(
        "  .buffer a f16[16]\n  .buffer b f16[16]\n  .buffer y f16[16]",
        "  vfadd.f16 y, a, b",
    );
    let (_, r) = run_on(&src, &narrow).unwrap();
    assert_eq!(r.stats.pe.vector_cycles[0], 8);
}

#[test]
fn vector_ops_compute_in_their_dtype() {
    let src = one_pe(
        "  .buffer a f32[4]\n  .buffer h f16[4]\n  .buffer b bf16[4]\n  .buffer y f32[4]\n  .buffer s f32[3]",
        "  vmov.f32 h, a\n  vmov.f32 b, a\n  vfmul.f32 y, a, 3.0\n  lf f1, 1.0\n  vsum.f32 f1, a\n  stf s[0], f1\n  lf f2, 0\n  vdot.f32 f2, a, a\n  stf s[1], f2\n  lf f3, -100\n  vrmax.f32 f3, a\n  stf s[2], f3",
    );
    let src = src.replace(
        ".place k 0,0 1x1",
        ".place k 0,0 1x1\n.data a 0,0 1x1 = [1.0009765625, 0.1, -3.0, 65519.0]",
    );
    let (p, r) = run(&src);
    let a = [1.0 + 1.0 / 1024.0f32, 0.1, -3.0, 65519.0];
    let h: Vec<f32> = a.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
    let b: Vec<f32> = a
        .iter()
        .map(|v| half::bf16::from_f32(*v).to_f32())
        .collect();
    assert_eq!(buf(&p, &r, "h"), h);
    assert_eq!(buf(&p, &r, "b"), b);
    assert_eq!(
        buf(&p, &r, "y"),
        a.iter().map(|v| v * 3.0).collect::<Vec<_>>()
    );
    let sum = a.iter().fold(1.0f32, |s, v| s + v);
    let dot = a.iter().fold(0.0f32, |s, v| s + v * v);
    assert_eq!(buf(&p, &r, "s"), vec![sum, dot, 65519.0]);
}

#[test]
fn async_ops_run_beside_the_main_thread_and_activate_a_task() {
    let src = ".grid 1x1
.code k
  .buffer a f32[64]
  .buffer y f32[64]
  .buffer log i32[2]
  .task main local active
  .task done local
main:
  vmov.f32 y, a async 3 -> done
  li r1, 7
  st log[0], r1
  end
done:
  li r2, 9
  st log[1], r2
  end
.end
.place k 0,0 1x1
.data a 0,0 1x1 = iota(0, 1)
";
    let (p, r) = run(src);
    assert_eq!(
        buf(&p, &r, "y"),
        (0..64).map(|i| i as f32).collect::<Vec<_>>()
    );
    assert_eq!(buf(&p, &r, "log"), vec![7.0, 9.0]);
    assert_eq!(r.stats.pe.tasks[0], 2);
    // A memory-to-memory f32 move is held to two elements per cycle by the
    // single 64-bit write port, although the datapath has 4 lanes.
    assert_eq!(r.stats.pe.vector_cycles[0], 32);
}

#[test]
fn data_tasks_run_once_per_wavelet_and_wait_while_blocked() {
    // `acc` starts blocked; main spins 20 iterations, then unblocks it.
    let src = ".grid 1x1
.code k
  .buffer out f32[1]
  .buffer count i32[1]
  .task acc data c4 blocked
  .task main local active
main:
  li r1, 0
spin:
  add r1, r1, 1
  blt r1, 20, spin
  unblock acc
  end
acc:
  ldf f1, out[0]
  fadd f1, f1, f0
  stf out[0], f1
  ld r2, count[0]
  add r2, r2, 1
  st count[0], r2
  end
.end
.place k 0,0 1x1
.route 0,0 1x1 c4 W -> R
.input x f32[8] -> 0,0 W c4 = iota(1, 1)
";
    let (p, r) = run(src);
    assert_eq!(buf(&p, &r, "out"), vec![36.0]);
    assert_eq!(buf(&p, &r, "count"), vec![8.0]);
    assert_eq!(r.stats.pe.tasks[0], 9);
    // While blocked, the queue filled and backpressure reached the host link.
    assert!(
        r.stats.pe.router_stall_cycles[0] > 10,
        "{}",
        r.stats.pe.router_stall_cycles[0]
    );
}

#[test]
fn sixteen_bit_streams_pack_two_values_per_wavelet() {
    let src = ".grid 1x1
.code k
  .buffer h f16[5]
  .task main local active
main:
  vmov.f16 tx(c2), h
  end
.end
.place k 0,0 1x1
.route 0,0 1x1 c2 R -> E
.data h 0,0 1x1 = [0.5, -1.25, 3.0, 1000.0, 0.1]
.output y f16[5] <- 0,0 E c2
";
    let (_, r) = run(src);
    let want: Vec<f32> = [0.5f32, -1.25, 3.0, 1000.0, 0.1]
        .iter()
        .map(|v| half::f16::from_f32(*v).to_f32())
        .collect();
    assert_eq!(r.outputs["y"], want);
    assert_eq!(r.stats.pe.wavelets_from_core[0], 3);
}

#[test]
fn faults_name_the_pe_task_and_instruction() {
    let e = err(&one_pe("  .buffer a f32[4]", "  li r1, 9\n  ldf f1, a[r1]"));
    assert!(
        e.contains("PE(0,0)")
            && e.contains("task `main`")
            && e.contains("ldf f1, a[r1]")
            && e.contains("outside buffer `a`"),
        "{e}"
    );
    let e = err(&one_pe(
        "  .buffer a f32[4]\n  .buffer b f32[8]",
        "  li r1, 8\n  vmov.f32 a, b[0, r1]",
    ));
    assert!(e.contains("lengths differ (4 and 8)"), "{e}");
}

#[test]
fn a_receive_nobody_feeds_is_reported_as_a_deadlock() {
    let src = ".grid 2x1
.code k
  .buffer a f32[4]
  .task main local active
main:
  vmov.f32 a, rx(c3)
  end
.end
.code idle
  .task main local
main:
  end
.end
.place k 1,0 1x1
.place idle 0,0 1x1
.route 1,0 1x1 c3 W -> R
.route 0,0 1x1 c3 R -> E
";
    let e = err(src);
    assert!(e.contains("deadlock"), "{e}");
    assert!(e.contains("PE(1,0) task `main` main thread `vmov.f32 a[0, 4], rx(c3)`: 0 of 4 elements done, waits for input on c3"), "{e}");
}

#[test]
fn a_cyclic_wait_names_both_pes() {
    // Each PE receives before it sends: neither ever sends.
    let src = ".grid 2x1
.code west
  .buffer a f32[2]
  .task main local active
main:
  vmov.f32 a, rx(c1)
  vmov.f32 tx(c2), a
  end
.end
.code east
  .buffer a f32[2]
  .task main local active
main:
  vmov.f32 a, rx(c2)
  vmov.f32 tx(c1), a
  end
.end
.place west 0,0 1x1
.place east 1,0 1x1
.route 0,0 1x1 c2 R -> E
.route 1,0 1x1 c2 W -> R
.route 1,0 1x1 c1 R -> W
.route 0,0 1x1 c1 E -> R
";
    let e = err(src);
    assert!(
        e.contains("PE(0,0)") && e.contains("waits for input on c1"),
        "{e}"
    );
    assert!(
        e.contains("PE(1,0)") && e.contains("waits for input on c2"),
        "{e}"
    );
}

#[test]
fn stuck_wavelets_and_short_outputs_are_named() {
    // The host sends 8 values but the PE reads only 2; the output wants 4.
    let src = ".grid 1x1
.code k
  .buffer a f32[2]
  .task main local active
main:
  vmov.f32 a, rx(c1)
  vmov.f32 tx(c2), a
  end
.end
.place k 0,0 1x1
.route 0,0 1x1 c1 W -> R
.route 0,0 1x1 c2 R -> E
.input x f32[8] -> 0,0 W c1
.output y f32[4] <- 0,0 E c2
";
    let e = err(src);
    assert!(
        e.contains("PE(0,0) input queue c1") && e.contains("unread"),
        "{e}"
    );
    assert!(
        e.contains("host output `y`: received 2 of 4 elements"),
        "{e}"
    );
}

#[test]
fn an_endless_loop_hits_the_cycle_limit() {
    let e = err(&one_pe("", "spin:\n  jmp spin"));
    assert!(e.contains("cycle limit of 100000"), "{e}");
}

fn check_err(src: &str, arch: &Arch) -> String {
    let p = program(src);
    wafer_emulator::check::check(&p, arch)
        .unwrap_err()
        .to_string()
}

#[test]
fn checks_name_the_pe_and_color() {
    let a = Arch::wse3();
    let e = check_err(&one_pe("  .buffer big f32[12300]", ""), &a);
    assert!(
        e.contains("PE(0,0) (code `k`): needs") && e.contains("49152"),
        "{e}"
    );
    let e = check_err(
        &one_pe("  .buffer a f32[4]", "  vmov.f32 tx(c30), a").replace(
            ".place k 0,0 1x1",
            ".place k 0,0 1x1\n.route 0,0 1x1 c30 R -> E",
        ),
        &a,
    );
    assert!(
        e.contains("color c30 is out of range") && e.contains("24 colors"),
        "{e}"
    );
    let e = check_err(
        &one_pe("  .buffer a f32[4]", "  vmov.f32 tx(c2), a").replace(
            ".place k 0,0 1x1",
            ".place k 0,0 1x1\n.route 0,0 1x1 c2 R -> E",
        ),
        &a,
    );
    assert!(
        e.contains("PE(0,0): route sends c2 out of E, off the grid, and no host output"),
        "{e}"
    );
    let src = ".grid 2x1\n.code k\n  .buffer a f32[4]\n  .task main local active\nmain:\n  vmov.f32 tx(c2), a\n  end\n.end\n.place k 0,0 1x1\n.route 0,0 1x1 c2 R -> E\n";
    let e = check_err(src, &a);
    assert!(
        e.contains(
            "PE(0,0): route sends c2 E to PE(1,0), which has no route for c2 arriving from W"
        ),
        "{e}"
    );
    let e = check_err(&format!("{src}.route 1,0 1x1 c2 W -> R\n"), &a);
    assert!(
        e.contains("PE(1,0): route delivers c2 to the core, but no code runs there"),
        "{e}"
    );
    let e = check_err(
        &one_pe("", "").replace(
            ".place k 0,0 1x1",
            ".place k 0,0 1x1\n.route 0,0 1x1 c6 W -> R\n",
        ),
        &a,
    );
    assert!(
        e.contains("PE(0,0): route delivers c6 to the core, but code `k` there never receives c6"),
        "{e}"
    );
    let two =
        ".grid 3x3\n.route 1,1 1x1 c5 W -> E\n.route 1,1 1x1 c5 N -> E\n.route 0,1 1x1 c5 E -> W\n";
    let e = check_err(two, &a);
    assert!(
        e.contains("PE(1,1): color c5 has two writers into port E (from N,W)"),
        "{e}"
    );
    let big = ".grid 40x2\n";
    let e = check_err(big, &a.with_grid(16, 16).unwrap());
    assert!(
        e.contains("needs a 40x2 rectangle (80 PEs)") && e.contains("16x16 grid"),
        "{e}"
    );
}

#[test]
fn input_overrides_are_checked() {
    let src = ".grid 1x1\n.code k\n  .buffer a f32[2]\n  .task main local active\nmain:\n  vmov.f32 a, rx(c1)\n  end\n.end\n.place k 0,0 1x1\n.route 0,0 1x1 c1 W -> R\n.input x f32[2] -> 0,0 W c1\n";
    let p = program(src);
    let mut inputs = Inputs::new();
    inputs.insert("x".into(), vec![1.0, 2.0, 3.0]);
    let e = wafer_emulator::run(&p, &Arch::wse3(), &inputs, &RunConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("host input `x`: expects 2 values, got 3"), "{e}");
    let mut inputs = Inputs::new();
    inputs.insert("z".into(), vec![1.0]);
    let e = wafer_emulator::run(&p, &Arch::wse3(), &inputs, &RunConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such input") && e.contains("x"), "{e}");
    let mut inputs = Inputs::new();
    inputs.insert("x".into(), vec![4.0, 5.0]);
    let r = wafer_emulator::run(&p, &Arch::wse3(), &inputs, &RunConfig::default()).unwrap();
    assert_eq!(
        r.read_buffer(&p, Pe::new(0, 0), "a").unwrap(),
        vec![4.0, 5.0]
    );
}

/// Code placed on a whole wse2 program rectangle is stored once: the binary
/// stays tiny, and a functional run whose SRAM images would not fit in
/// host memory is refused, with the numbers.
#[test]
fn a_full_wafer_program_stores_its_code_once() {
    let src = ".grid 750x994\n.code k\n  .buffer a f32[3000]\n  .task main local active\nmain:\n  vmov.f32 a, 1.0\n  end\n.end\n.place k 0,0 750x994\n";
    let p = program(src);
    let bytes = wafer_emulator::binary::encode(&p);
    assert!(bytes.len() < 300, "{} bytes for 745,500 PEs", bytes.len());
    let e = wafer_emulator::run(&p, &Arch::wse2(), &Inputs::new(), &RunConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("745500 PEs with code lay out 8.") && e.contains("8 GiB limit"),
        "{e}"
    );
}

#[test]
fn integer_division_rounds_toward_zero_and_faults_on_zero() {
    let src = one_pe(
        "  .buffer i i32[2]",
        "  li r1, -7\n  div r2, r1, 2\n  st i[0], r2\n  rem r2, r1, 2\n  st i[1], r2",
    );
    let (p, r) = run(&src);
    assert_eq!(buf(&p, &r, "i"), vec![-3.0, -1.0]);
    let e = err(&one_pe("", "  li r1, 0\n  div r2, r2, r1"));
    assert!(
        e.contains("division by zero") && e.contains("div r2, r2, r1"),
        "{e}"
    );
}

#[test]
fn sin_cos_and_float_compares() {
    let src = one_pe(
        "  .buffer a f32[3]\n  .buffer s f32[3]\n  .buffer i i32[3]",
        "  vsin.f32 s, a\n  lf f1, 0.5\n  lf f2, 0.5\n  lf f3, 0.25\n  feq r1, f1, f2\n  st i[0], r1\n  flt r1, f1, f3\n  st i[1], r1\n  flt r1, f3, f1\n  st i[2], r1\n  fcos f4, f1\n  stf a[0], f4",
    );
    let src = src.replace(
        ".place k 0,0 1x1",
        ".place k 0,0 1x1\n.data a 0,0 1x1 = [0.5, -1.25, 3.0]",
    );
    let (p, r) = run(&src);
    assert_eq!(
        buf(&p, &r, "s"),
        vec![0.5f32.sin(), (-1.25f32).sin(), 3.0f32.sin()]
    );
    assert_eq!(buf(&p, &r, "i"), vec![1.0, 0.0, 1.0]);
    assert_eq!(buf(&p, &r, "a")[0], 0.5f32.cos());
    // Special functions run at 1/special_fn_cycles per element.
    assert!(r.stats.pe.vector_cycles[0] == 3 * Arch::wse3().special_fn_cycles as u64);
}

#[test]
fn a_set_cancel_flag_stops_the_run_with_interrupted() {
    let p = program(
        ".grid 1x1\n.code c\n  .task main local active\nmain:\n  li r1, 0\nloop:\n  add r1, r1, 1\n  blt r1, 100000, loop\n  end\n.end\n.place c 0,0 1x1\n",
    );
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cfg = RunConfig {
        cancel: Some(flag.clone()),
        ..RunConfig::default()
    };
    // Unset, the run finishes; set, it stops at the next check.
    assert!(wafer_emulator::run(&p, &Arch::wse3(), &Inputs::new(), &cfg).is_ok());
    flag.store(true, std::sync::atomic::Ordering::Relaxed);
    match wafer_emulator::run(&p, &Arch::wse3(), &Inputs::new(), &cfg) {
        Err(RunError::Interrupted { cycle }) => assert_eq!(cycle, 0),
        other => panic!("expected an interruption, got {other:?}"),
    }
}

/// int8 codes are read by vector ops as their integer values (a bf16
/// multiply by a scale dequantizes them) and never written but by a data
/// image; a scalar access or a vector write is refused by the verifier.
#[test]
fn int8_codes_are_read_by_vector_ops_only() {
    let src = ".grid 1x1\n.code k\n  .buffer q i8[6]\n  .buffer t bf16[6]\n  .task main local active\nmain:\n  lf f2, 0.5\n  vfmul.bf16 t, q, f2\n  end\n.end\n.place k 0,0 1x1\n.data q 0,0 1x1 = [-128, -3, 0, 1, 127, 5]\n";
    let (p, r) = run(src);
    assert_eq!(buf(&p, &r, "t"), vec![-64.0, -1.5, 0.0, 0.5, 63.5, 2.5]);
    assert_eq!(
        r.read_values(&p, Pe::new(0, 0), "q"),
        Some(wafer_emulator::Values::Int(vec![-128, -3, 0, 1, 127, 5]))
    );
    for (body, want) in [
        ("  vmov.f32 q, t", "vmov writes i8 buffer `q`"),
        ("  ldf f1, q[0]", "scalar load/store on i8 buffer `q`"),
        ("  ld r1, q[0]", "scalar load/store on i8 buffer `q`"),
        ("  vfmul.i8 t, q, q", "`i8` is not a float dtype"),
    ] {
        let e = asm::parse(
            &one_pe("  .buffer q i8[6]\n  .buffer t bf16[6]", body),
            "q.wsm",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(want), "{body}: {e}");
    }
}

/// A functional run holds each PE's SRAM image, only the bytes its code
/// lays out: many PEs with small buffers run (430 × 430 PEs would be
/// 8.5 GiB at the whole 48 KB a PE), and the same PEs with buffers that
/// add up past the limit are refused before anything is allocated.
#[test]
fn functional_runs_are_limited_by_the_bytes_their_code_lays_out() {
    let grid = |buffer: &str| {
        format!(
            ".grid 430x430\n.code k\n  .buffer {buffer}\n  .task main local active\nmain:\n  lf f1, 2.5\n  stf out[0], f1\n  end\n.end\n.place k 0,0 430x430\n"
        )
    };
    let (p, r) = run(&grid("out f32[1]"));
    assert_eq!(r.read_buffer(&p, Pe::new(429, 429), "out").unwrap(), [2.5]);
    let e = err(&grid("out f32[12000]"));
    assert!(
        e.contains("184900 PEs with code lay out 8.") && e.contains("8 GiB limit"),
        "{e}"
    );
}

/// Host input arrivals ([`RunConfig::arrivals`]): a wavelet enters no
/// earlier than its cycle, in order; every engine agrees; no arrivals and
/// arrivals at cycle 0 are the same run; bad ones are refused by name.
#[test]
fn host_inputs_wait_for_their_arrivals_and_outputs_say_when_they_left() {
    use std::sync::Arc;
    use wafer_emulator::{Arrivals, Engine};
    // A PE that sends each wavelet it receives straight on east.
    let src = ".grid 1x1\n.code k\n  .buffer a f32[4]\n  .task main local active\nmain:\n  vmov.f32 a, rx(c1)\n  vmov.f32 tx(c2), a\n  end\n.end\n.place k 0,0 1x1\n.route 0,0 1x1 c1 W -> R\n.route 0,0 1x1 c2 R -> E\n.input x f32[4] -> 0,0 W c1 = iota(1, 1)\n.output y f32[4] <- 0,0 E c2\n";
    let p = program(src);
    let arch = Arch::wse3();
    let on = |engine, arrivals: Option<Vec<u64>>| {
        let cfg = RunConfig {
            engine,
            arrivals: arrivals.map(|a| Arc::new(Arrivals::from([("x".to_string(), a)]))),
            ..RunConfig::default()
        };
        wafer_emulator::run(&p, &arch, &Inputs::new(), &cfg).unwrap_or_else(|e| panic!("{e}"))
    };
    let free = on(Engine::Reference, None);
    let zero = on(Engine::Reference, Some(vec![0; 4]));
    assert_eq!(
        (free.cycles, &free.output_times),
        (zero.cycles, &zero.output_times)
    );
    assert_eq!(free.output_times["y"].len(), 4);
    assert!(free.output_times["y"].windows(2).all(|w| w[0] < w[1]));
    assert!(free.output_times["y"][3] < free.cycles);
    // The third wavelet arrives at cycle 100 and the fourth, due
    // earlier, follows it. The PE sends only once all four are in, so
    // every output and the run's end move by the same number of cycles:
    // the wait, less the few cycles the fourth took to enter unhindered.
    let late = on(Engine::Reference, Some(vec![0, 0, 100, 3]));
    let shift = late.cycles - free.cycles;
    assert!((95..=100).contains(&shift), "{shift}");
    assert_eq!(late.outputs["y"], vec![1.0, 2.0, 3.0, 4.0]);
    let moved: Vec<u64> = free.output_times["y"].iter().map(|t| t + shift).collect();
    assert_eq!(late.output_times["y"], moved);
    // Each input wavelet entered at its arrival or after the one before:
    // unhindered a cycle apart, late the third at 100 and the fourth,
    // though there since cycle 3, right after it.
    assert_eq!(free.input_times["x"], vec![0, 1, 2, 3]);
    assert_eq!(late.input_times["x"], vec![0, 1, 100, 101]);
    for engine in [Engine::Interp, Engine::Jit] {
        let r = on(engine, Some(vec![0, 0, 100, 3]));
        assert_eq!(
            (r.cycles, &r.output_times, &r.input_times),
            (late.cycles, &late.output_times, &late.input_times),
            "{engine:?}"
        );
    }
    let bad = |a: Arrivals| {
        let cfg = RunConfig {
            arrivals: Some(Arc::new(a)),
            ..RunConfig::default()
        };
        wafer_emulator::run(&p, &arch, &Inputs::new(), &cfg)
            .unwrap_err()
            .to_string()
    };
    let e = bad(Arrivals::from([("x".to_string(), vec![0; 3])]));
    assert!(
        e.contains("`x`") && e.contains("3 arrival cycles") && e.contains("4 wavelets"),
        "{e}"
    );
    let e = bad(Arrivals::from([("z".to_string(), vec![0])]));
    assert!(e.contains("`z`") && e.contains("does not take"), "{e}");
}
