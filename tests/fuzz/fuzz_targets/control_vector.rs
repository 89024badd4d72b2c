//! A control-vector GGUF, read with llama.cpp's rules.
#![no_main]
use ethos_steer::control::ControlVector;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    let path = ethos_fuzz::scratch("vector.gguf", data);
    let _ = ControlVector::read(&path);
});
