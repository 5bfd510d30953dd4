use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use wafer_emulator::{asm, binary, load_program};

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
    let p = load_program(&a.input).map_err(anyhow::Error::msg)?;
    let out = a.output.unwrap_or_else(|| a.input.with_extension("wafer"));
    let bytes = binary::encode(&p);
    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
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
    let p = load_program(&a.input).map_err(anyhow::Error::msg)?;
    let text = asm::print(&p);
    match a.output {
        Some(out) => {
            std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}
