//! `cargo bench`: forward-pass throughput of the default model (prefill of 128 tokens and
//! 32 decode steps), a quick local check. Reported tokens/s are for comparing commits on one
//! machine; the peer comparison lives in `ethos bench speed --llama-bench`.

use ethos::model::{loader, LoadOptions, ModelSpec};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let path = ethos::model::fetch::models_dir().join(ethos::model::fetch::DEFAULT_MODEL_FILE);
    if !path.exists() {
        println!(
            "skipped: {} is not there (run `ethos pull` first)",
            path.display()
        );
        return Ok(());
    }
    let model = loader::load(&ModelSpec::Gguf(path), &LoadOptions::default())?;
    let d = &model.decoder;
    let ids: Vec<u32> = (0..128u32).map(|i| 200 + i * 7).collect();
    let pos: Vec<i32> = (0..128).collect();
    for round in 0..3 {
        let mut cache = d.new_cache(1, 160)?;
        let t = Instant::now();
        d.forward_last(
            std::slice::from_ref(&ids),
            std::slice::from_ref(&pos),
            &mut cache,
            None,
        )?;
        let prefill = 128.0 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for p in 128..160 {
            d.forward_last(&[vec![42]], &[vec![p]], &mut cache, None)?;
        }
        let decode = 32.0 / t.elapsed().as_secs_f64();
        println!("round {round}: prefill {prefill:.1} tok/s, decode {decode:.1} tok/s");
    }
    Ok(())
}
