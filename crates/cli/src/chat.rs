//! `ethos chat`: one user turn per line of standard input, replies streamed.

use crate::common::ModelArgs;
use crate::generate::SamplingArgs;
use anyhow::{Context, Result};
use ethos_model::chat::Message;
use ethos_steer::{GenerateRequest, Session};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[arg(long)]
    pub system: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let params = a.sampling.params()?;
    let model = a.model.load()?;
    let tok = model.tokenizer()?;
    let tmpl = model
        .chat_template
        .as_ref()
        .context("the model has no chat template")?;
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(Message::new("system", s));
    }
    let mut session = Session::new(&model);
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!("ethos chat: one message per line; end with Ctrl-D");
    for (turn, line) in crate::common::bounded_lines(stdin.lock(), "standard input").enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        messages.push(Message::new("user", &line));
        let ids = tok.encode_prompt(&tmpl.render(&messages, true)?)?;
        let mut p = params.clone();
        p.seed = params.seed.wrapping_add(turn as u64);
        let req = GenerateRequest::new(ids, p, a.sampling.options());
        let g = session.generate(&req, &mut |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        })?;
        println!();
        messages.push(Message::new("assistant", g.text.trim()));
    }
    Ok(())
}
