//! A lambda file (`steer solve --lambda-out`), with the palette it names beside it.
#![no_main]
use ethos_steer::palette::decode::LambdaFile;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    let parts = ethos_fuzz::parts(data, 2);
    ethos_fuzz::scratch("palette.toml", parts.get(1).copied().unwrap_or(b""));
    let path = ethos_fuzz::scratch("lambda.json", parts[0]);
    let _ = LambdaFile::read(&path);
});
