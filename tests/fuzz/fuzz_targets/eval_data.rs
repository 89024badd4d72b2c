//! Benchmark data files as `ethos eval --data` reads them; the first byte picks the reader:
//! CulturalBench (one or two CSVs), NormAd CSV, CIVICS JSON/JSONL, Utility outcomes JSON.
#![no_main]
use ethos_evals::benchmarks::{civics::Civics, culturalbench::CulturalBench, normad::NormAd};
use ethos_evals::data::Source;
use ethos_evals::Benchmark;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fn source(name: &str, bytes: &[u8]) -> Source {
    Source {
        name: name.into(),
        bytes: bytes.to_vec(),
    }
}

fn use_items(b: &dyn Benchmark) {
    for i in 0..b.item_count().min(8) {
        let _ = b.item_id(i);
        let _ = b.groups(i);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(b) = CulturalBench::from_sources(vec![source("cb.csv", rest)]) {
                use_items(&b);
            }
        }
        1 => {
            let parts = ethos_fuzz::parts(rest, 2);
            let sources = parts
                .iter()
                .enumerate()
                .map(|(i, p)| source(&format!("cb{i}.csv"), p))
                .collect();
            if let Ok(b) = CulturalBench::from_sources(sources) {
                use_items(&b);
            }
        }
        2 => {
            if let Ok(b) = NormAd::from_source(source("normad.csv", rest)) {
                use_items(&b);
            }
        }
        3 => {
            if let Ok(b) = Civics::from_source(source("civics.json", rest)) {
                use_items(&b);
            }
        }
        _ => {
            let path = ethos_fuzz::scratch("outcomes.json", rest);
            let _ = ethos_evals::benchmarks::utility::load_outcomes("file", Some(&path));
        }
    }
});
