//! The fabric: host input streams, routers moving wavelets between buffers
//! (round robin, atomic multicast), and output to the host.

use super::*;
use event::land_and_wake;

impl<'p> Machine<'p> {
    pub(super) fn step_host(&mut self) {
        for i in 0..self.host_in.len() {
            let h = &self.host_in[i];
            if h.next >= h.wavelets.len() {
                continue;
            }
            if self.now < h.next_time {
                self.activity = true;
                continue;
            }
            if self.fifos.has_space(h.fifo, self.now) {
                let (fifo, bits) = (h.fifo, h.wavelets[h.next]);
                self.push(fifo, self.arch.hop_latency, bits);
                let h = &mut self.host_in[i];
                h.times.push(self.now);
                h.next += 1;
                h.next_time = h.due(self.now + h.period as u64);
            }
        }
    }

    pub(super) fn step_router(&mut self, pe: usize) -> Result<(), RunError> {
        // The machine's parts taken apart: the loop below pushes into
        // FIFOs and marks routers while it reads the route entries, and
        // through `&mut self` the compiler would reload every field it
        // reads on each turn (about a tenth of its instructions).
        let Machine {
            p,
            arch,
            now,
            fifos,
            routers: Routers { at, entries },
            host_out,
            stats,
            activity,
            horizon,
            wake,
            bands,
            ..
        } = self;
        let now = *now;
        let r = &at[pe];
        let (n, full, rr, masked) = (r.n as usize, r.full, r.rr, r.masked());
        if full == 0 {
            return Ok(());
        }
        let entries = &mut entries[r.off as usize..r.off as usize + n];
        let mut claimed = PortSet::EMPTY;
        let mut used_in = PortSet::EMPTY;
        let mut stalled = false;
        let mut last = None;
        // Round robin from entry `rr` over the entries holding something
        // (an empty buffer has no head to move).
        let mut order = turns(if masked { full } else { 0 }, rr);
        let mut k = 0;
        loop {
            let i = if masked {
                match order.next() {
                    Some(i) => i,
                    None => break,
                }
            } else {
                if k == n {
                    break;
                }
                k += 1;
                (rr + k - 1) % n
            };
            let e = &entries[i];
            if used_in.contains(e.port) || !fifos.ready(e.fifo, now) {
                continue;
            }
            if e.outs.intersects(claimed) {
                stalled = true;
                continue;
            }
            let room = |d: Dest| match d {
                Dest::Fifo(f) => fifos.has_space(f, now),
                Dest::Host(h) => host_out[h as usize].has_room(now),
                Dest::Remote(i) => bands.has_room(i),
                Dest::None => false,
            };
            if let Some(o) = (e.outs.iter()).find(|o| !room(e.dests[o.index()])) {
                // Held for a departure cycle ([`RunConfig::departures`]):
                // a wait with an end, as a host input's arrival is.
                if let Dest::Host(_) = e.dests[o.index()] {
                    *activity = true;
                }
                stalled = true;
                continue;
            }
            // Pop the buffer, keeping the router's occupancy mask.
            let bits = fifos.pop(e.fifo, now);
            let ring = fifos.ring(e.fifo);
            if ring.link != NONE {
                bands.freed(ring.link);
            }
            if masked && ring.len == 0 {
                at[pe].full &= !(1u128 << ring.slot);
            }
            if let Some(w) = wake.as_mut() {
                let o = ring.pop_wake;
                if o != NONE && w.rouse(o) {
                    w.woken.push(o);
                }
            }
            for o in e.outs.iter() {
                let delay = if o == Port::Ramp {
                    arch.ramp_latency
                } else {
                    arch.hop_latency
                };
                let ready = now + delay as u64;
                match e.dests[o.index()] {
                    Dest::Fifo(f) => {
                        land_and_wake(fifos, at, wake, f, ready, bits);
                        *horizon = (*horizon).max(ready);
                    }
                    Dest::Remote(i) => {
                        bands.push(i, ready, bits);
                        *horizon = (*horizon).max(ready);
                    }
                    Dest::Host(h) => {
                        deliver_host(p, host_out, horizon, now, h as usize, bits, delay)?
                    }
                    Dest::None => unreachable!("routes only name connected ports"),
                }
            }
            claimed.0 |= e.outs.0;
            used_in.insert(e.port);
            // Counted into `wavelets_out` at the run's end
            // (`Machine::count_moves`); a count that wraps carries its
            // 2^16 moves there now.
            let (outs, moved) = (e.outs, &mut entries[i].moved);
            *moved = moved.wrapping_add(1);
            if *moved == 0 {
                for o in outs.iter() {
                    stats[pe].wavelets_out[o.index()] += 1 << 16;
                }
            }
            last = Some(i);
            *activity = true;
        }
        if let Some(i) = last {
            at[pe].rr = i + 1;
        }
        if stalled {
            stats[pe].router_stall_cycles += 1;
        }
        Ok(())
    }
}

/// A wavelet `bits` leaving the grid through host output `h` at `now`,
/// `delay` cycles before it is past the edge.
fn deliver_host(
    p: &Program,
    host_out: &mut [HostOut],
    horizon: &mut u64,
    now: u64,
    h: usize,
    bits: u32,
    delay: u32,
) -> Result<(), RunError> {
    *horizon = (*horizon).max(now + delay as u64);
    let out = &mut host_out[h];
    out.times.push(now);
    let per = out.dtype.per_word();
    for k in 0..per {
        if out.values.len() as u32 == out.len {
            // The padding half of a final 16-bit wavelet is not data.
            if k > 0 {
                break;
            }
            let s = &p.outputs[out.stream];
            return Err(RunError::OutputOverflow {
                name: s.name.clone(),
                len: s.len,
                pe: s.pe,
            });
        }
        out.values.push(
            out.dtype
                .decode((bits >> (16 * k)) & if per == 1 { u32::MAX } else { 0xffff }),
        );
    }
    Ok(())
}

/// The set bits of `full` (a masked router's occupied entries, a core's
/// live op slots) in round-robin order from `rr` (at most 128): those at
/// or after it, then those before it. That is the mask rotated to start
/// at `rr`, its bits lowest first: one pass, no split.
pub(super) fn turns(full: u128, rr: usize) -> impl Iterator<Item = usize> {
    let shift = rr % Router::MASKED;
    Bits(full.rotate_right(shift as u32)).map(move |b| (b + shift) % Router::MASKED)
}

/// The set bits of a mask, lowest first.
struct Bits(u128);

impl Iterator for Bits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::{Bits, turns};

    /// Set bits lowest first, bit 127 included.
    #[test]
    fn bits_lowest_first() {
        assert_eq!(Bits(0).count(), 0);
        let m = (1u128 << 127) | (1 << 64) | 0b1010_0001;
        assert_eq!(Bits(m).collect::<Vec<_>>(), [0, 5, 7, 64, 127]);
    }

    /// The round robin visits the occupied entries at or after `rr` in
    /// order, then those before it, for every `rr` a router can hold
    /// (up to 128, one past its last entry).
    #[test]
    fn turns_start_at_the_round_robin() {
        let masks = [
            0,
            1,
            1u128 << 127,
            (1u128 << 127) | (1 << 64) | 0b1010_0001,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            u128::MAX,
        ];
        for m in masks {
            for rr in 0..=128 {
                let want: Vec<usize> = (rr..128)
                    .chain(0..rr)
                    .filter(|&i| m >> i & 1 == 1)
                    .collect();
                assert_eq!(
                    turns(m, rr).collect::<Vec<_>>(),
                    want,
                    "mask {m:#x} from {rr}"
                );
            }
        }
        let m = (1u128 << 127) | (1 << 64) | 0b1010_0001;
        assert_eq!(turns(m, 6).collect::<Vec<_>>(), [7, 64, 127, 0, 5]);
    }
}
