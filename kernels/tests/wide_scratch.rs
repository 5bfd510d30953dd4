use wafer_emulator::{Arch, RunConfig};
use wafer_kernels::reduce::Strategy;
use wafer_kernels::vector::{self, VectorOp, VectorSpec};

#[test]
fn scratch() {
    let arch = Arch::wse3();
    for op in [VectorOp::Add, VectorOp::Silu, VectorOp::Swiglu] {
        for w in 1..=4u32 {
            let mut row = Vec::new();
            for l in [1u32, 2, 3, 5, 8, 13, 30] {
                let n = l * w;
                let s = VectorSpec { op, n, h: 1, w, strategy: Strategy::Chain, eps: 1e-5, seed: 3 };
                let f = vector::generate(&s, &arch).unwrap();
                let inputs = f.default_inputs();
                let cfg = RunConfig { timing_only: true, ..RunConfig::default() };
                let (_, run) = f.run(&arch, &inputs, &cfg).unwrap();
                let one = VectorSpec { n: l, w: 1, ..s.clone() };
                row.push(format!("L{l}:{}({})", run.cycles, vector::cost(&one, &arch)));
            }
            println!("{op:?} w={w}: {}", row.join(" "));
        }
    }
    println!("hop {} ramp {} issue {} ts {}", arch.hop_latency, arch.ramp_latency, arch.vector_issue_cycles, arch.task_switch_cycles);
}
