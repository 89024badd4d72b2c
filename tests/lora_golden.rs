//! LoRA adapters made by the `peft` library on the tiny random bases
//! (`tests/ref/make_lora_fixtures.py`): our forward with the adapters, unmerged and merged,
//! must give transformers + peft's logits at every position to 1e-4 (f32); llama.cpp's
//! conversion of an adapter to a LoRA GGUF the same numbers as its PEFT folder, on an HF and
//! a GGUF base; two adapters at scales 0.5 and 1.0 PEFT's weighted combination. Bad
//! adapters fail with one line naming the file and field.

mod common;

use common::*;
use ethos::model::lora::{AdapterSpec, Adapters};
use ethos::model::{loader, DType, Decoder};
use std::path::{Path, PathBuf};

const CASES: [&str; 7] = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma3",
    "deepseek_v3",
    "deepseek_v2",
];

fn lora_dir(case: &str) -> PathBuf {
    fixtures().join("lora").join(case)
}

struct Reference {
    base: String,
    ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn reference(case: &str, file: &str) -> Reference {
    let v = read_json(&lora_dir(case).join(file));
    Reference {
        base: v["base"].as_str().unwrap().to_string(),
        ids: serde_json::from_value(v["input_ids"].clone()).unwrap(),
        logits: serde_json::from_value(v["logits"].clone()).unwrap(),
    }
}

fn spec(path: PathBuf, scale: f64) -> AdapterSpec {
    AdapterSpec { path, scale }
}

fn options(specs: &[AdapterSpec], merge: bool) -> ethos::model::Result<loader::LoadOptions> {
    Ok(loader::LoadOptions {
        dtype: Some(DType::F32),
        adapters: Adapters::load(specs, merge)?,
        ..Default::default()
    })
}

fn load(base: &Path, specs: &[AdapterSpec], merge: bool) -> ethos::model::Result<Decoder> {
    let opts = options(specs, merge)?;
    let model = if base.is_dir() {
        loader::load_folder(base, &opts)?
    } else {
        loader::load_gguf(base, &opts)?
    };
    Ok(model.decoder)
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn base_folder(r: &Reference) -> PathBuf {
    fixtures().join("tiny").join(&r.base)
}

#[test]
fn peft_adapters_match_transformers_and_peft_unmerged_and_merged() {
    for case in CASES {
        let r = reference(case, "reference.json");
        let adapter = spec(lora_dir(case).join("a"), 1.0);
        let plain = load(&base_folder(&r), &[], false).unwrap();
        let moved = max_diff(&all_logits(&plain, &r.ids), &r.logits);
        // The adapter must matter, or the comparison proves nothing.
        assert!(
            moved > 1e-2,
            "{case}: the adapter moves logits by only {moved}"
        );
        for merge in [false, true] {
            let d = load(&base_folder(&r), std::slice::from_ref(&adapter), merge).unwrap();
            let diff = max_diff(&all_logits(&d, &r.ids), &r.logits);
            eprintln!("{case} (merge {merge}): max |logit diff| {diff:.2e}, the adapter moves logits by up to {moved:.2}");
            assert!(
                diff < 1e-4,
                "{case} (merge {merge}): max |logit diff| {diff}"
            );
            // Decoding through the cache gives the same numbers as the full forward.
            let decoded = decoded_logits(&d, &r.ids, 5);
            let dd = max_diff(&decoded, &all_logits(&d, &r.ids));
            assert!(dd < 1e-5, "{case} (merge {merge}): decode vs forward {dd}");
        }
    }
}

#[test]
fn two_adapters_at_their_scales_equal_peft_weighted_combination() {
    let a = spec(lora_dir("llama").join("a"), 0.5);
    let b = spec(lora_dir("llama").join("b"), 1.0);
    let r = reference("llama", "reference-a+b.json");
    assert_eq!(
        read_json(&lora_dir("llama").join("reference-a+b.json"))["adapters"],
        serde_json::json!([["a", 0.5], ["b", 1.0]])
    );
    for merge in [false, true] {
        let d = load(&base_folder(&r), &[a.clone(), b.clone()], merge).unwrap();
        let diff = max_diff(&all_logits(&d, &r.ids), &r.logits);
        eprintln!("a:0.5 + b:1.0 (merge {merge}): max |logit diff| {diff:.2e}");
        assert!(diff < 1e-4, "a:0.5 + b:1.0 (merge {merge}): {diff}");
    }
    // rsLoRA alone (b's alpha / sqrt(r)).
    let rb = reference("llama", "reference-b.json");
    let d = load(&base_folder(&rb), &[b], false).unwrap();
    let diff = max_diff(&all_logits(&d, &rb.ids), &rb.logits);
    assert!(diff < 1e-4, "b (rsLoRA): {diff}");
}

/// llama.cpp permutes Llama's q/k rows in GGUF files, the base's and the adapter's alike: a
/// PEFT adapter on a GGUF base, a LoRA GGUF on an HF base, and both in GGUF agree.
#[test]
fn lora_gguf_gives_its_peft_folders_numbers_on_either_base() {
    let r = reference("llama", "reference.json");
    let gguf_base = fixtures().join("tiny/llama/model-f32.gguf");
    let folder_base = base_folder(&r);
    let peft = spec(lora_dir("llama").join("a"), 1.0);
    let gguf = spec(lora_dir("llama").join("a.gguf"), 1.0);
    for (base, adapter) in [
        (&gguf_base, &peft),
        (&gguf_base, &gguf),
        (&folder_base, &gguf),
    ] {
        for merge in [false, true] {
            let d = load(base, std::slice::from_ref(adapter), merge).unwrap();
            let diff = max_diff(&all_logits(&d, &r.ids), &r.logits);
            eprintln!(
                "{} on {} (merge {merge}): max |logit diff| {diff:.2e}",
                adapter.path.file_name().unwrap().to_string_lossy(),
                base.file_name().unwrap().to_string_lossy()
            );
            assert!(
                diff < 1e-4,
                "{} on {} (merge {merge}): {diff}",
                adapter.path.display(),
                base.display()
            );
        }
    }
}

/// Writes a PEFT folder in `dir` holding `config` and the given tensors.
fn write_peft(dir: &Path, config: serde_json::Value, tensors: &[(&str, Vec<f32>, (usize, usize))]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let map: std::collections::HashMap<String, ethos::model::Tensor> = tensors
        .iter()
        .map(|(n, v, s)| {
            (
                n.to_string(),
                ethos::model::Tensor::from_vec(v.clone(), *s, &ethos::model::Device::Cpu).unwrap(),
            )
        })
        .collect();
    candle_core::safetensors::save(&map, dir.join("adapter_model.safetensors")).unwrap();
}

fn lora_config(r: usize) -> serde_json::Value {
    serde_json::json!({"peft_type": "LORA", "r": r, "lora_alpha": 8, "bias": "none",
                       "target_modules": ["q_proj"], "use_dora": false})
}

fn load_err(base: &Path, specs: &[AdapterSpec]) -> String {
    match load(base, specs, false) {
        Ok(_) => panic!("{:?} loaded", specs),
        Err(e) => {
            let s = e.to_string();
            assert!(!s.contains('\n'), "not one line: {s}");
            s
        }
    }
}

#[test]
fn bad_adapters_get_one_line_naming_the_file_and_field() {
    let llama = fixtures().join("tiny/llama");
    let tmp = std::env::temp_dir().join(format!("ethos-lora-bad-{}", std::process::id()));
    let q = |r: usize, x: f32| {
        vec![
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                vec![x; r * 64],
                (r, 64),
            ),
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
                vec![0.5; 64 * r],
                (64, r),
            ),
        ]
    };
    // An adapter for another base: layers by size, modules by name.
    let e = load_err(&llama, &[spec(lora_dir("gemma3").join("a"), 1.0)]);
    assert!(
        e.contains("gemma3/a") && e.contains("the model's layer is"),
        "{e}"
    );
    let dir = tmp.join("names");
    let mut deeper = q(2, 0.1);
    deeper[0].0 = "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight";
    deeper[1].0 = "base_model.model.model.layers.9.self_attn.q_proj.lora_B.weight";
    write_peft(&dir, lora_config(2), &deeper);
    let e = load_err(&llama, &[spec(dir, 1.0)]);
    assert!(
        e.contains("model.layers.9.self_attn.q_proj matches no layer"),
        "{e}"
    );
    // A rank over the layer's size.
    let dir = tmp.join("rank");
    write_peft(&dir, lora_config(80), &q(80, 0.1));
    let e = load_err(&llama, &[spec(dir.clone(), 1.0)]);
    assert!(e.contains("rank 80 is over"), "{e}");
    // Non-finite values.
    let dir = tmp.join("nan");
    write_peft(&dir, lora_config(2), &q(2, f32::NAN));
    let e = load_err(&llama, &[spec(dir.clone(), 1.0)]);
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("non-finite"),
        "{e}"
    );
    // Unknown PEFT types and options.
    for (field, value, want) in [
        (
            "peft_type",
            serde_json::json!("IA3"),
            "IA3 adapters are not supported",
        ),
        ("use_dora", serde_json::json!(true), "DoRA"),
        ("bias", serde_json::json!("all"), "only \"none\""),
        ("r", serde_json::json!(0), "positive integer"),
        (
            "modules_to_save",
            serde_json::json!(["lm_head"]),
            "not supported",
        ),
    ] {
        let dir = tmp.join(field);
        let mut cfg = lora_config(2);
        cfg[field] = value;
        write_peft(&dir, cfg, &q(2, 0.1));
        let e = load_err(&llama, &[spec(dir.clone(), 1.0)]);
        assert!(
            e.contains("adapter_config.json")
                && e.contains(&format!("`{field}`"))
                && e.contains(want),
            "{field}: {e}"
        );
    }
    // A folder without a config, a path that is not there, a GGUF model given as an adapter.
    let dir = tmp.join("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let e = load_err(&llama, &[spec(dir, 1.0)]);
    assert!(e.contains("no adapter_config.json"), "{e}");
    let e = load_err(&llama, &[spec(tmp.join("missing"), 1.0)]);
    assert!(e.contains("no such adapter"), "{e}");
    let e = load_err(
        &llama,
        &[spec(fixtures().join("tiny/llama/model-f32.gguf"), 1.0)],
    );
    assert!(
        e.contains("general.type") && e.contains("not a LoRA adapter"),
        "{e}"
    );
    // A LoRA GGUF for another architecture.
    let e = load_err(
        &fixtures().join("tiny/qwen2"),
        &[spec(lora_dir("llama").join("a.gguf"), 1.0)],
    );
    assert!(e.contains("general.architecture"), "{e}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Named adapters (a server's per-request ones) stay off until a selection asks for them;
/// selected for every row they give the listed adapters' numbers, and a batch of rows each
/// with its own adapters gives each row the bits it gets alone.
#[test]
fn named_adapters_apply_to_the_rows_that_select_them() {
    use ethos::model::lora::{with_row_adapters, Adapter, RowAdapters};
    let r = reference("llama", "reference.json");
    let rab = reference("llama", "reference-a+b.json");
    let named = |n: &str| {
        (
            n.to_string(),
            Adapter::load(&spec(lora_dir("llama").join(n), 1.0)).unwrap(),
        )
    };
    let opts = loader::LoadOptions {
        dtype: Some(DType::F32),
        adapters: Adapters {
            named: vec![named("a"), named("b")],
            ..Default::default()
        },
        ..Default::default()
    };
    let d = loader::load_folder(&base_folder(&r), &opts)
        .unwrap()
        .decoder;
    let plain = load(&base_folder(&r), &[], false).unwrap();
    assert_eq!(all_logits(&d, &r.ids), all_logits(&plain, &r.ids));
    let a = with_row_adapters(Some(RowAdapters::Every(vec![(0, 1.0)])), || {
        all_logits(&d, &r.ids)
    });
    assert!(max_diff(&a, &r.logits) < 1e-4);
    let ab = with_row_adapters(Some(RowAdapters::Every(vec![(0, 0.5), (1, 1.0)])), || {
        all_logits(&d, &r.ids)
    });
    assert!(max_diff(&ab, &rab.logits) < 1e-4);
    // One token per sequence, three sequences: a, none, a:0.5 + b.
    let choice = [vec![(0, 1.0)], vec![], vec![(0, 0.5), (1, 1.0)]];
    let ids: Vec<Vec<u32>> = vec![vec![5], vec![9], vec![17]];
    let pos = vec![vec![0]; 3];
    let batched = with_row_adapters(Some(RowAdapters::PerRow(choice.to_vec())), || {
        let mut cache = d.new_cache(3, 1).unwrap();
        d.forward_last(&ids, &pos, &mut cache, None)
            .unwrap()
            .rows()
            .unwrap()
    });
    for (i, c) in choice.iter().enumerate() {
        let alone = with_row_adapters(Some(RowAdapters::PerRow(vec![c.clone()])), || {
            let mut cache = d.new_cache(1, 1).unwrap();
            d.forward_last(&ids[i..i + 1], &pos[..1], &mut cache, None)
                .unwrap()
                .rows()
                .unwrap()
        });
        assert_eq!(batched[i], alone[0], "row {i}");
    }
    assert_ne!(batched[0], batched[1]);
}
