use clap::Args;

#[derive(Args, Debug)]
pub struct ArchArgs {
    /// A preset (wse2, wse3) or a TOML/JSON machine file; all presets if omitted.
    pub spec: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn arch(a: ArchArgs) -> anyhow::Result<()> {
    let specs: Vec<String> = match a.spec {
        Some(s) => vec![s],
        None => wafer_emulator::arch::PRESETS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    for spec in specs {
        let arch = wafer_emulator::Arch::load(&spec)?;
        let value = serde_json::to_value(&arch)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&value)?);
            continue;
        }
        println!(
            "machine {}  ({} PEs, {:.2} GHz)",
            arch.name,
            arch.n_pes(),
            arch.clock_hz / 1e9
        );
        for (k, v) in value.as_object().expect("Arch is an object") {
            if k != "name" {
                println!("  {k:<22} {v}");
            }
        }
    }
    Ok(())
}
