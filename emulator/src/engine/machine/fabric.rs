//! The fabric: host input streams, routers moving wavelets between buffers
//! (round robin, atomic multicast), and output to the host.

use super::*;

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
                h.next += 1;
                h.next_time = self.now + h.period as u64;
            }
        }
    }

    pub(super) fn dest_has_space(&self, d: Dest) -> bool {
        match d {
            Dest::Fifo(f) => self.fifos.has_space(f, self.now),
            Dest::Host(_) => true,
            Dest::None => false,
        }
    }

    pub(super) fn step_router(&mut self, pe: usize) -> Result<(), RunError> {
        let n = self.routers[pe].entries.len();
        if n == 0 {
            return Ok(());
        }
        let mut claimed = PortSet::EMPTY;
        let mut used_in = PortSet::EMPTY;
        let mut stalled = false;
        let mut last = None;
        let rr = self.routers[pe].rr;
        for k in 0..n {
            let i = (rr + k) % n;
            let e = &self.routers[pe].entries[i];
            if used_in.contains(e.port) || self.fifos.head(e.fifo, self.now).is_none() {
                continue;
            }
            if e.outs.intersects(claimed)
                || !e
                    .outs
                    .iter()
                    .all(|o| self.dest_has_space(e.dests[o.index()]))
            {
                stalled = true;
                continue;
            }
            let (outs, dests, fifo, port) = (e.outs, e.dests, e.fifo, e.port);
            let bits = self.fifos.pop(fifo, self.now);
            if let Some(w) = self.wake.as_mut() {
                let o = w.pop_wakes[fifo.index()];
                if o != NONE && !w.awake[o as usize] {
                    w.awake[o as usize] = true;
                    w.woken.push(o);
                }
            }
            for o in outs.iter() {
                self.stats[pe].wavelets_out[o.index()] += 1;
                let delay = if o == Port::Ramp {
                    self.arch.ramp_latency
                } else {
                    self.arch.hop_latency
                };
                match dests[o.index()] {
                    Dest::Fifo(f) => self.push(f, delay, bits),
                    Dest::Host(h) => self.deliver_host(h as usize, bits, delay)?,
                    Dest::None => unreachable!("routes only name connected ports"),
                }
            }
            claimed.0 |= outs.0;
            used_in.insert(port);
            last = Some(i);
            self.activity = true;
        }
        if let Some(i) = last {
            self.routers[pe].rr = i + 1;
        }
        if stalled {
            self.stats[pe].router_stall_cycles += 1;
        }
        Ok(())
    }

    pub(super) fn deliver_host(&mut self, h: usize, bits: u32, delay: u32) -> Result<(), RunError> {
        self.horizon = self.horizon.max(self.now + delay as u64);
        let out = &mut self.host_out[h];
        let per = out.dtype.per_word();
        for k in 0..per {
            if out.values.len() as u32 == out.len {
                // The padding half of a final 16-bit wavelet is not data.
                if k > 0 {
                    break;
                }
                let s = &self.p.outputs[h];
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
}
