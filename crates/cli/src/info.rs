//! `ethos info` and `ethos pull`

use crate::common::{print_json, ModelArgs};
use anyhow::Result;
use ethos_model::{fetch, loader, ModelSpec};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let m = a.model.load()?;
    let c = m.config();
    let kv_per_token = m.decoder.kv_shape().bytes_per_token(m.info.dtype);
    let kv_layout = if c.mla.is_some() {
        "latent (kv_lora_rank + qk_rope_head_dim per layer)"
    } else {
        "per-head keys and values"
    };
    let experts = c.moe.as_ref().map(|e| {
        format!(
            "{} routed ({} per token, {}), {} shared; first {} layers dense",
            e.router.n_experts,
            e.router.top_k,
            e.router.method.name(),
            e.n_shared_experts,
            e.first_k_dense_replace
        )
    });
    let v = serde_json::json!({
        "source": m.info.source,
        "format": m.info.format,
        "architecture": c.arch.name(),
        "parameters": c.parameter_count(),
        "layers": c.num_layers,
        "hidden_size": c.hidden_size,
        "heads": c.num_heads,
        "kv_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "context_length": c.max_position_embeddings,
        "weights": m.info.weights,
        "compute_dtype": format!("{:?}", m.info.dtype).to_lowercase(),
        "device": a.model.device,
        "tied_embeddings": c.tie_word_embeddings,
        "rope_theta": c.rope.theta,
        "tokenizer": m.tokenizer.as_ref().map(|t| t.kind.clone()),
        "chat_template": m.chat_template.is_some(),
        "bos_token_id": c.bos_token_id,
        "eos_token_ids": m.eos_ids(),
        "kv_cache_bytes_per_token": kv_per_token,
        "kv_cache_layout": kv_layout,
        "active_parameters": c.active_parameter_count(),
        "experts": experts,
        "file_bytes": m.info.file_bytes,
        "load_seconds": m.info.load_seconds,
        "adapters": m.info.adapters,
    });
    if a.json {
        return print_json(&v);
    }
    let rows = [
        ("source", m.info.source.clone()),
        ("architecture", c.arch.name().to_string()),
        (
            "parameters",
            format!("{:.1} M", c.parameter_count() as f64 / 1e6),
        ),
        (
            "layers / hidden / heads / kv heads",
            format!(
                "{} / {} / {} / {}",
                c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads
            ),
        ),
        ("vocabulary", c.vocab_size.to_string()),
        ("context length", c.max_position_embeddings.to_string()),
        ("weights", format!("{} ({})", m.info.weights, m.info.format)),
        (
            "compute dtype",
            format!(
                "{:?} on {} (default: f32 on CPU, bf16 on GPU)",
                m.info.dtype, a.model.device
            )
            .to_lowercase(),
        ),
        (
            "tokenizer",
            m.tokenizer
                .as_ref()
                .map_or("none".into(), |t| t.kind.clone()),
        ),
        (
            "chat template",
            if m.chat_template.is_some() {
                "yes".into()
            } else {
                "no".into()
            },
        ),
        ("eos ids", format!("{:?}", m.eos_ids())),
        (
            "KV cache per token",
            format!("{kv_per_token} bytes, {kv_layout}"),
        ),
        ("experts", experts.clone().unwrap_or_else(|| "none".into())),
        ("load time", format!("{:.2} s", m.info.load_seconds)),
    ];
    for (k, v) in rows {
        println!("{k:>36}: {v}");
    }
    for ad in &m.info.adapters {
        let how = if ad.merged { "merged" } else { "unmerged" };
        let rs = if ad.rslora { ", rsLoRA" } else { "" };
        println!(
            "{:>36}: {} ({}, {how}, scale {}, rank {}, alpha {}{rs}, {} modules: {}, {} parameters)",
            "LoRA adapter",
            ad.path,
            ad.format,
            ad.scale,
            ad.rank,
            ad.alpha,
            ad.modules,
            ad.targets.join(" "),
            ad.parameters
        );
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// What to fetch (default: the default model).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
}

pub fn pull(a: PullArgs) -> Result<()> {
    match ModelSpec::parse(a.model.as_deref())? {
        ModelSpec::Default => println!(
            "{}",
            fetch::ensure_default_model(&fetch::models_dir())?.display()
        ),
        ModelSpec::Hub {
            repo,
            file: Some(f),
        } => println!("{}", fetch::hub_file(&repo, &f)?.display()),
        spec @ ModelSpec::Hub { .. } => {
            // Loading fetches every file the folder needs.
            let m = loader::load(&spec, &Default::default())?;
            println!("{}", m.info.source);
        }
        ModelSpec::Gguf(p) | ModelSpec::Folder(p) => println!("{} is local already", p.display()),
    }
    Ok(())
}
