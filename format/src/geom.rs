//! Where things are on the grid: PE coordinates, router ports, colors and
//! rectangles of PEs (optionally strided, so one rule covers a lattice).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A processing element's coordinates. `x` grows east, `y` grows south; the
/// program rectangle's north-west corner is `(0, 0)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pe {
    pub x: u32,
    pub y: u32,
}

impl Pe {
    pub const fn new(x: u32, y: u32) -> Pe {
        Pe { x, y }
    }

    /// The neighbour through `port`, if it lies inside a `width × height` grid.
    pub fn neighbour(self, port: Port, width: u32, height: u32) -> Option<Pe> {
        let (x, y) = (self.x as i64, self.y as i64);
        let (nx, ny) = match port {
            Port::N => (x, y - 1),
            Port::S => (x, y + 1),
            Port::E => (x + 1, y),
            Port::W => (x - 1, y),
            Port::Ramp => return None,
        };
        (nx >= 0 && ny >= 0 && nx < width as i64 && ny < height as i64)
            .then(|| Pe::new(nx as u32, ny as u32))
    }
}

impl fmt::Display for Pe {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PE({},{})", self.x, self.y)
    }
}

/// A router port. `Ramp` connects the router to its own core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Port {
    N,
    S,
    E,
    W,
    Ramp,
}

impl Port {
    pub const ALL: [Port; 5] = [Port::N, Port::S, Port::E, Port::W, Port::Ramp];
    pub const COUNT: usize = 5;

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Port {
        Port::ALL[i]
    }

    /// The port on the neighbouring router that a wavelet leaving through
    /// `self` enters by.
    pub fn opposite(self) -> Port {
        match self {
            Port::N => Port::S,
            Port::S => Port::N,
            Port::E => Port::W,
            Port::W => Port::E,
            Port::Ramp => Port::Ramp,
        }
    }

    pub fn parse(s: &str) -> Option<Port> {
        Some(match s {
            "N" => Port::N,
            "S" => Port::S,
            "E" => Port::E,
            "W" => Port::W,
            "R" | "RAMP" => Port::Ramp,
            _ => return None,
        })
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Port::N => "N",
            Port::S => "S",
            Port::E => "E",
            Port::W => "W",
            Port::Ramp => "R",
        })
    }
}

/// A set of router ports (multicast targets), one bit per [`Port`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSet(pub u8);

impl PortSet {
    pub const EMPTY: PortSet = PortSet(0);

    pub fn single(p: Port) -> PortSet {
        PortSet(1 << p.index())
    }
    pub fn contains(self, p: Port) -> bool {
        self.0 & (1 << p.index()) != 0
    }
    pub fn insert(&mut self, p: Port) {
        self.0 |= 1 << p.index();
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn intersects(self, o: PortSet) -> bool {
        self.0 & o.0 != 0
    }
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }
    pub fn iter(self) -> impl Iterator<Item = Port> {
        Port::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A routable color (virtual channel). Display: `c3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Color(pub u8);

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// `w × h` PEs starting at `(x, y)`, `sx`/`sy` apart: `x + i·sx` for `i < w`.
/// A step of 1 is a plain rectangle. Text form: `x,y wxh` or `x,y wxh step sx,sy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeRect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub sx: u32,
    pub sy: u32,
}

impl PeRect {
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> PeRect {
        PeRect {
            x,
            y,
            w,
            h,
            sx: 1,
            sy: 1,
        }
    }

    pub fn single(pe: Pe) -> PeRect {
        PeRect::new(pe.x, pe.y, 1, 1)
    }

    pub fn count(&self) -> u64 {
        self.w as u64 * self.h as u64
    }

    /// One past the largest x and y covered (for bounds checks).
    pub fn x_end(&self) -> u64 {
        if self.w == 0 {
            self.x as u64
        } else {
            self.x as u64 + (self.w as u64 - 1) * self.sx as u64 + 1
        }
    }
    pub fn y_end(&self) -> u64 {
        if self.h == 0 {
            self.y as u64
        } else {
            self.y as u64 + (self.h as u64 - 1) * self.sy as u64 + 1
        }
    }

    pub fn contains(&self, pe: Pe) -> bool {
        let on =
            |p: u32, o: u32, n: u32, s: u32| p >= o && (p - o).is_multiple_of(s) && (p - o) / s < n;
        on(pe.x, self.x, self.w, self.sx) && on(pe.y, self.y, self.h, self.sy)
    }

    pub fn iter(&self) -> impl Iterator<Item = Pe> + '_ {
        (0..self.h).flat_map(move |j| {
            (0..self.w).map(move |i| Pe::new(self.x + i * self.sx, self.y + j * self.sy))
        })
    }
}

impl fmt::Display for PeRect {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{},{} {}x{}", self.x, self.y, self.w, self.h)?;
        if self.sx != 1 || self.sy != 1 {
            write!(f, " step {},{}", self.sx, self.sy)?;
        }
        Ok(())
    }
}

/// The most PEs a grid (a program rectangle, a machine, a stats or trace
/// file) may have: 4,194,304, 4.7 times a WSE-3. Every per-PE table the
/// tools build is sized by the grid, so a size read from a file is checked
/// against this before anything is allocated.
pub const MAX_PES: u64 = 1 << 22;

/// Whether a `cols × rows` grid is one the tools handle: neither side 0,
/// at most [`MAX_PES`] PEs. The error says which limit it breaks.
pub fn check_grid(cols: u32, rows: u32) -> Result<(), GridError> {
    let pes = cols as u64 * rows as u64;
    if pes == 0 {
        return Err(GridError::Empty { cols, rows });
    }
    if pes > MAX_PES {
        return Err(GridError::TooBig { cols, rows, pes });
    }
    Ok(())
}

/// A grid size the tools do not handle.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error("grid {cols}x{rows} is empty")]
    Empty { cols: u32, rows: u32 },
    #[error("grid {cols}x{rows} has {pes} PEs; wafer handles at most {MAX_PES} (4.7 WSE-3 wafers)")]
    TooBig { cols: u32, rows: u32, pes: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_rect_covers_its_lattice_only() {
        let r = PeRect {
            x: 1,
            y: 0,
            w: 4,
            h: 1,
            sx: 2,
            sy: 1,
        };
        let pes: Vec<_> = r.iter().map(|p| p.x).collect();
        assert_eq!(pes, vec![1, 3, 5, 7]);
        assert!(r.contains(Pe::new(5, 0)));
        assert!(!r.contains(Pe::new(4, 0)));
        assert!(!r.contains(Pe::new(9, 0)));
        assert_eq!(r.x_end(), 8);
    }

    #[test]
    fn neighbours_stop_at_the_edge() {
        assert_eq!(Pe::new(0, 0).neighbour(Port::W, 4, 4), None);
        assert_eq!(Pe::new(0, 0).neighbour(Port::S, 4, 4), Some(Pe::new(0, 1)));
        assert_eq!(Pe::new(3, 3).neighbour(Port::E, 4, 4), None);
    }
}
