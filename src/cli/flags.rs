//! Flag values checked where clap parses them, so a value that makes no
//! sense stops the command before any work with one line naming the flag
//! and what it allows (clap prefixes "invalid value 'V' for '--flag'").
//! Used as `value_parser = flags::count::<1, 1_000_000>` and the like.

use std::path::Path;

/// At most this much of a value is echoed back in an error: a mistyped
/// 10 MB argument is not worth printing.
const ECHO: usize = 60;

/// `s` as it appears in an error: whole if short, else its start and its
/// length.
pub fn shown(s: &str) -> String {
    if s.chars().count() <= ECHO {
        s.to_string()
    } else {
        let head: String = s.chars().take(ECHO).collect();
        format!("{head}… ({} bytes)", s.len())
    }
}

/// A whole number in `LO..=HI`.
pub fn count<const LO: u64, const HI: u64>(s: &str) -> Result<usize, String> {
    let v = whole(s)?;
    if !(LO..=HI).contains(&v) {
        return Err(format!("{v} is out of range: use {LO}..={HI}"));
    }
    usize::try_from(v).map_err(|_| format!("{v} is too large for this machine"))
}

/// [`count`] as a `u32`.
pub fn count32<const LO: u64, const HI: u64>(s: &str) -> Result<u32, String> {
    let v = count::<LO, HI>(s)?;
    u32::try_from(v).map_err(|_| format!("{v} is out of range: use {LO}..={}", u32::MAX))
}

/// [`count`] as a `u64`.
pub fn count64<const LO: u64, const HI: u64>(s: &str) -> Result<u64, String> {
    count::<LO, HI>(s).map(|v| v as u64)
}

fn whole(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') && t.len() > 1 {
        return Err(format!("{} is negative: use a whole number", shown(t)));
    }
    t.parse::<u64>().map_err(|_| {
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
            format!("{} is far too large", shown(t))
        } else {
            format!("`{}` is not a whole number", shown(t))
        }
    })
}

/// A finite number `≥ 0`.
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v < 0.0 {
        return Err(format!("{v} is negative: use 0 or more"));
    }
    Ok(v)
}

/// A finite number `> 0`.
pub fn positive(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v <= 0.0 {
        return Err(format!("{v} is not positive: use a number above 0"));
    }
    Ok(v)
}

/// A temperature: 0 (greedy) or a positive finite number up to 100.
pub fn temperature(s: &str) -> Result<f32, String> {
    let v = non_negative(s)?;
    if v > 100.0 {
        return Err(format!(
            "{v} is out of range: use 0 (greedy) to 100 (nearly uniform)"
        ));
    }
    Ok(v as f32)
}

fn number(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a number", shown(s.trim())))?;
    if !v.is_finite() {
        return Err(format!("{v} is not a finite number"));
    }
    Ok(v)
}

/// Worker threads: 1 to 1024 (more would only wait on each other; a
/// mistyped 100000 would try to start them all).
pub fn threads(s: &str) -> Result<usize, String> {
    count::<1, 1024>(s)
}

/// `COLSxROWS` with both sides at least 1 (and within `u32`).
pub fn dims(flag: &str, s: &str) -> anyhow::Result<(u32, u32)> {
    let side = |t: &str| -> Option<u32> { t.trim().parse::<u32>().ok().filter(|v| *v > 0) };
    s.split_once('x')
        .and_then(|(a, b)| Some((side(a)?, side(b)?)))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} `{}`: expected AxB with whole numbers 1..={}, e.g. 16x16",
                shown(s),
                u32::MAX
            )
        })
}

/// `AxBxC` with every side at least 1 (and within `u32`).
pub fn dims3(flag: &str, s: &str) -> anyhow::Result<[u32; 3]> {
    let parts: Vec<&str> = s.split('x').collect();
    let bad = || {
        anyhow::anyhow!(
            "{flag} `{}`: expected AxBxC, three positive integers",
            shown(s)
        )
    };
    let [a, b, c] = parts[..] else {
        return Err(bad());
    };
    let num = |v: &str| {
        count32::<1, { u32::MAX as u64 }>(v)
            .map_err(|e| anyhow::anyhow!("{flag} `{}`: {e}", shown(s)))
    };
    Ok([num(a)?, num(b)?, num(c)?])
}

/// Whether `path` can be written, checked before the work whose result
/// goes there: an existing file is opened for writing (not truncated),
/// a new one is created and removed again.
pub fn writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    let fail = |why: String| anyhow::anyhow!("{flag} {}: cannot write here: {why}", path.display());
    if path.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        return Ok(());
    }
    std::fs::File::create_new(path).map_err(|e| fail(e.to_string()))?;
    let _ = std::fs::remove_file(path);
    Ok(())
}
