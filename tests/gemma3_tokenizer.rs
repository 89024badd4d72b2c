//! The SentencePiece tokenizer built from Gemma 3 270M's GGUF (`tokenizer.ggml.model =
//! llama`) against the tokenizer transformers builds from the same file
//! (`tests/ref/make_gemma3_tokenizer_refs.py`): every CIVICS statement and translation,
//! every NormAd story, and a few edge cases.

mod common;

use common::*;
use ethos::model::tokenizer::Tokenizer;
use ethos::model::GgufFile;

#[test]
fn sentencepiece_from_gguf_matches_transformers() {
    let Some(path) = real_model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    assert_eq!(tok.kind, "gguf:llama/sentencepiece");
    // Texts come from the SmolLM2 fixture, which lists the same items in the same order.
    let texts = std::fs::read_to_string(fixtures().join("smollm2/tokenizer_ids.jsonl")).unwrap();
    let mut texts = texts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let refs = std::fs::read_to_string(fixtures().join("gemma3/tokenizer_ids.jsonl")).unwrap();
    let (mut n, mut bad) = (0, Vec::new());
    for line in refs.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = match r.get("text") {
            Some(t) => t.as_str().unwrap().to_string(),
            None => {
                let t = texts.next().unwrap();
                assert_eq!(
                    (&t["source"], &t["id"], &t["field"]),
                    (&r["source"], &r["id"], &r["field"])
                );
                t["text"].as_str().unwrap().to_string()
            }
        };
        let want: Vec<u32> = serde_json::from_value(r["ids"].clone()).unwrap();
        if tok.encode(&text).unwrap() != want {
            bad.push(format!(
                "{} {} {:?}",
                r["source"],
                r["id"],
                text.chars().take(40).collect::<String>()
            ));
        }
        n += 1;
    }
    assert!(n >= 3893, "{n} texts");
    assert!(
        bad.is_empty(),
        "{} of {n} differ, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}
