use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use wafer_emulator::{asm, binary};

/// Every stage of a compiled model: a comment line with its name, origin
/// and hand-off, then its program as assembly.
fn bundle_listing(path: &std::path::Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let stages = wafer_compiler::bundle::decode(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut out = format!(
        "; {}: a compiled model of {} stages\n",
        path.display(),
        stages.len()
    );
    for (i, s) in stages.iter().enumerate() {
        out.push_str(&format!(
            "\n; stage {i} `{}` on wafer {} at {}, hand-off {} cycles\n{}",
            s.name,
            s.wafer,
            s.origin,
            s.handoff_cycles,
            asm::print(&s.program)
        ));
    }
    Ok(out)
}

#[derive(Args, Debug)]
pub struct AsmArgs {
    /// Assembly source (.wsm).
    pub input: PathBuf,
    /// Output binary; defaults to the input with a .wafer extension.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DisasmArgs {
    /// A .wafer binary or .wsm file.
    pub input: PathBuf,
    /// Write the listing here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn asm(a: AsmArgs) -> anyhow::Result<()> {
    let p = super::program_file(&a.input)?;
    let out = a.output.unwrap_or_else(|| a.input.with_extension("wafer"));
    let bytes = binary::encode(&p);
    std::fs::write(&out, &bytes).with_context(|| format!("-o {}: cannot write", out.display()))?;
    println!(
        "{} -> {} ({} bytes, {} codes, {} PEs)",
        a.input.display(),
        out.display(),
        bytes.len(),
        p.codes.len(),
        p.n_pes()
    );
    Ok(())
}

pub fn disasm(a: DisasmArgs) -> anyhow::Result<()> {
    let text = if super::is_bundle(&a.input) {
        bundle_listing(&a.input)?
    } else {
        asm::print(&super::program_file(&a.input)?)
    };
    match a.output {
        Some(out) => std::fs::write(&out, text)
            .with_context(|| format!("-o {}: cannot write", out.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
