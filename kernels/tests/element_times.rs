//! A tensor's elements against its host streams' wavelets: which wavelet
//! carries each element, a run's wavelet times read per element, and
//! per-element cycles gathered per wavelet (arrivals and departures), on
//! a bf16 GEMV.

use std::collections::BTreeMap;
use wafer_emulator::{Arch, DType};
use wafer_kernels::gemv::{self, GemvSpec};
use wafer_kernels::reduce::Strategy as Reduce;

#[test]
fn elements_map_to_their_wavelets_both_ways() {
    let arch = Arch::wse3();
    let s = GemvSpec {
        m: 30,
        n: 20,
        dtype: DType::BF16,
        w: 4,
        h: 3,
        strategy: Reduce::Chain,
        seed: 1,
        halves: false,
        lead: Vec::new(),
    };
    let f = gemv::generate(&s, &arch).unwrap();
    for (port, streams) in [
        (&f.outputs[0], &f.program.outputs),
        (&f.inputs[0], &f.program.inputs),
    ] {
        let at = f.element_wavelets(port).unwrap();
        assert_eq!(at.len(), port.len as usize);
        // A run's wavelet times, each wavelet its own: read back per
        // element, each element gets its wavelet's.
        let times: BTreeMap<String, Vec<u64>> = (streams.iter())
            .enumerate()
            .map(|(k, h)| {
                let w = (0..h.wavelets() as u64).map(|i| 1000 * k as u64 + i);
                (h.name.clone(), w.collect())
            })
            .collect();
        let per_element = f.element_times(port, &times).unwrap();
        for (e, (stream, w)) in at.iter().enumerate() {
            assert_eq!(per_element[e], times[*stream][*w as usize], "{}", port.name);
        }
    }
    // Per-element cycles gathered per wavelet: the latest of its elements.
    for (port, input) in [(&f.inputs[0], true), (&f.outputs[0], false)] {
        let cycles: Vec<u64> = (0..port.len as u64).map(|e| (e * 7919) % 101).collect();
        let given = BTreeMap::from([(port.name.clone(), cycles.clone())]);
        let d = match input {
            true => f.arrivals(&given).unwrap(),
            false => f.departures(&given).unwrap(),
        };
        let mut want: BTreeMap<(&str, u32), u64> = BTreeMap::new();
        for (e, a) in f.element_wavelets(port).unwrap().into_iter().enumerate() {
            let m = want.entry(a).or_insert(0);
            *m = (*m).max(cycles[e]);
        }
        for ((stream, w), t) in want {
            assert_eq!(d[stream][w as usize], t, "{}", port.name);
        }
    }
    // Refused: the wrong count, a tensor the kernel does not send.
    let e = f
        .departures(&BTreeMap::from([("y".to_string(), vec![0; 3])]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("departure cycles of `y`") && e.contains("takes 30"),
        "{e}"
    );
    let e = f
        .departures(&BTreeMap::from([("x".to_string(), vec![0; 20])]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no output tensor `x`"), "{e}");
    let e = f
        .arrivals(&BTreeMap::from([("x".to_string(), vec![0; 2])]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("arrival cycles of `x`") && e.contains("takes 20"),
        "{e}"
    );
}
