//! `ethos`: a thin command-line front end over ethos-model and ethos-steer.

mod bench;
mod chat;
mod common;
mod diwali;
mod eval;
mod eval_args;
mod generate;
mod info;
mod personas;
mod score;
mod serve;
mod steer;
mod tokenize;
mod vectors;

use clap::{Parser, Subcommand};

/// Counts what budgeted threads hold, so that a hostile chat template stops at its memory
/// budget with an error instead of exhausting the machine.
#[global_allocator]
static ALLOCATOR: ethos_model::budget::BudgetAllocator = ethos_model::budget::BudgetAllocator;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ethos",
    version,
    about = "Local LLM inference with exact log-probs and value-steering hooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt.
    Generate(generate::Args),
    /// Chat with the model through its chat template (one line per user turn).
    Chat(chat::Args),
    /// Log-probs of continuations given contexts (JSONL), or of every token of a text.
    Score(score::Args),
    /// Serve the model over HTTP: OpenAI's completions and chat API with prompt log-probs
    /// and per-request control vectors, on continuous batching.
    Serve(serve::Args),
    /// Run a culture benchmark (civics, cmoraleval, culturalbench, diwali, normad, utility, yue-*) and write its results.
    Eval(Box<eval::Args>),
    /// Token ids and pieces of a text, as JSON.
    Tokenize(tokenize::Args),
    /// What a model is: architecture, size, storage, context, tokenizer.
    Info(info::Args),
    /// Fetch a model (the default one when --model is absent) without running it.
    Pull(info::PullArgs),
    /// Value steering: solve a MAP palette on a reward table.
    Steer {
        #[command(subcommand)]
        which: steer::Which,
    },
    /// Control vectors: train one from contrastive prompt pairs (llama.cpp's GGUF format).
    Vectors {
        #[command(subcommand)]
        which: vectors::Which,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

/// Keeps freed activation buffers in the process. Every forward allocates and frees
/// buffers of a few MiB; by default glibc hands blocks that large back to the kernel and
/// faults them in again on the next call, a visible share of an eval's wall time.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator thresholds; called before any other thread exists.
    unsafe {
        // 32 MiB is glibc's largest mmap threshold on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() -> ExitCode {
    keep_freed_buffers();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Score(a) => score::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Eval(a) => eval::run(*a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Info(a) => info::run(a),
        Command::Pull(a) => info::pull(a),
        Command::Steer { which } => steer::run(which),
        Command::Vectors { which } => vectors::run(which),
        Command::Bench { which } => bench::run(which),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the source: the error names the file, field or limit.
            let msg = format!("{e:#}");
            eprintln!("ethos: error: {}", msg.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
    }
}
