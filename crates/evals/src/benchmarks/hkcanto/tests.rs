use super::*;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hkcanto")
}

/// Every prompt is the authors' (`format_example`/`gen_prompt` over pandas' reading of the
/// synthetic files, in `expected_prompts.json`), five-shot and zero-shot.
#[test]
fn prompts_are_the_authors_over_pandas_cells() {
    let b = HkCanto::from_dir(&fixture().join("data")).unwrap();
    let expected: serde_json::Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("expected_prompts.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(b.item_count(), expected.len());
    for i in 0..b.item_count() {
        let id = b.item_id(i);
        let want = &expected[&id];
        let set = id.split('/').next().unwrap();
        assert!(b.applies(i, set, "five-shot"));
        for format in FORMATS {
            let p = &b.prompts(i, set, format, false).unwrap()[0];
            assert_eq!(p.body, want[*format].as_str().unwrap(), "{id} {format}");
            assert_eq!(p.delimiter, " ");
        }
    }
}

#[test]
fn answers_are_checked_as_the_authors_check_them() {
    let b = HkCanto::from_dir(&fixture().join("data")).unwrap();
    let judge = |id: &str, lps: Vec<f64>| {
        let i = (0..b.item_count()).find(|&i| b.item_id(i) == id).unwrap();
        b.judge(i, "", "", &[], &[Answer::Options(lps)]).unwrap()
    };
    // A lower-case answer matches the upper-cased letter.
    assert!(judge("cultural/local_knowledge/2", vec![0.0, -1.0, -2.0, -3.0]).correct);
    // "Ď" is no letter: never right.
    let j = judge("dse/math_en/3", vec![-3.0, -2.0, -1.0, 0.0]);
    assert_eq!(
        (j.prediction.as_str(), j.gold.as_str(), j.correct),
        ("D", "Ď", false)
    );
    assert_eq!(b.groups(0), [("subject", "cultural/food".to_string())]);
}

#[test]
fn one_set_folder_or_bad_files_are_named() {
    let one = HkCanto::from_dir(&fixture().join("data/dse")).unwrap();
    assert_eq!(one.item_count(), 3);
    let dir = tempfile::tempdir().unwrap();
    let e = HkCanto::from_dir(dir.path()).err().unwrap().to_string();
    assert!(e.ends_with("holds none of HKCanto-Eval's set folders (cultural, hk-law, dse); pass hkeval2025/data or one of them"), "{e}");
    let test = dir.path().join("hk-law/test");
    std::fs::create_dir_all(&test).unwrap();
    std::fs::write(test.join("pet_test.csv"), "q,a,b,c,D\n").unwrap();
    let e = HkCanto::from_dir(dir.path()).err().unwrap().to_string();
    assert!(
        e.ends_with(
            "pet_test.csv: row 1: 5 columns; HKCanto-Eval rows are question, A, B, C, D, answer"
        ),
        "{e}"
    );
    std::fs::write(test.join("pet_test.csv"), "q,a,b,c,d,A\n").unwrap();
    let b = HkCanto::from_dir(dir.path()).unwrap();
    let e = b
        .prompts(0, "hk-law", "five-shot", false)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(e, "hkcanto: hk-law/dev/pet_dev.csv is missing; five-shot takes its examples from it (or ask --formats zero-shot)");
    assert!(b.prompts(0, "hk-law", "zero-shot", false).is_ok());
}
