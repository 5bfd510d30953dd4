//! Helpers the kernel tests share.

use std::collections::BTreeMap;
use wafer_emulator::Arrivals;
use wafer_kernels::Fragment;

/// Arrivals for a fragment's input streams that start late and come in
/// bursts, drawn from `delays` (each pair: a gap of up to 6 cycles before
/// a wavelet, and whether the next stream is hindered at all); and, per
/// stream, the cycle each wavelet is then pushed in (in order, one a
/// cycle at most), as the kernels' fed cost models take them.
pub fn late_arrivals(
    f: &Fragment,
    delays: &[(u64, bool)],
) -> (Arrivals, BTreeMap<String, Vec<u64>>) {
    let mut arrivals = Arrivals::new();
    let mut pushed = BTreeMap::new();
    let mut d = delays.iter().cycle();
    for input in &f.program.inputs {
        let hindered = d.next().is_none_or(|d| d.1);
        let mut t = 0u64;
        let (mut at, mut pushes) = (Vec::new(), Vec::<u64>::new());
        for _ in 0..input.wavelets() {
            if hindered {
                t += d.next().map_or(0, |d| d.0 % 7);
            }
            at.push(t);
            pushes.push(pushes.last().map_or(t, |p| (p + 1).max(t)));
        }
        pushed.insert(input.name.clone(), pushes);
        arrivals.insert(input.name.clone(), at);
    }
    (arrivals, pushed)
}
