//! Library use: load any model (a GGUF file, an HF folder or a hub id) and describe it.
//! `cargo run --release --example load -- path/to/model.gguf`

use ethos::model::{loader, LoadOptions, ModelSpec};

fn main() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1);
    let model = loader::load(&ModelSpec::parse(arg.as_deref())?, &LoadOptions::default())?;
    let c = model.config();
    println!("{} ({:?}): {} layers, hidden {}, vocab {}, {:.1} M parameters, weights {}, loaded in {:.2} s",
        model.info.source, c.arch, c.num_layers, c.hidden_size, c.vocab_size, c.parameter_count() as f64 / 1e6, model.info.weights, model.info.load_seconds);
    Ok(())
}
