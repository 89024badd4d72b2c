//! A palette TOML: values, targets and reward definitions.
#![no_main]
use ethos_steer::palette::Palette;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Palette::parse(text, "palette.toml") {
        let _ = p.reward_specs("palette.toml");
    }
});
