// Reference log-probs and greedy text from llama.cpp, for fixtures (not part of ethos).
//
// Build against a llama.cpp build tree (static libraries), e.g. at 0c1e570:
//   g++ -O2 -std=c++17 -fopenmp tests/ref/llamacpp_logprobs.cpp -I$SRC/include -I$SRC/ggml/include \
//     $BUILD/src/libllama.a $BUILD/ggml/src/libggml.a $BUILD/ggml/src/libggml-cpu.a \
//     $BUILD/ggml/src/libggml-base.a -lpthread -ldl -o /tmp/llamacpp_logprobs
// Usage: llamacpp_logprobs MODEL.gguf N_CTX N_THREADS N_GREEDY [single] < input > output
// (`single`: the sequences are evaluated one token per call, as decode runs, not in one batch)
// Input: one line per sequence of space-separated token ids; the last line is the greedy
// prompt. Output, one line per input line: for a sequence, "logprobs" then the float64
// log-probs of ids[1..] given the prefix (all ids in one batch), then "top1" and the argmax
// at each position; for the prompt, "greedy" and N_GREEDY greedy ids, then "margins": at each
// greedy step the logit gap between the chosen token and the runner-up.
// Flash attention is off (ethos implements the non-flash path); the KV cache is f16 (default).
// With CVEC=FILE:SCALE in the environment, llama.cpp's own loader (common_control_vector_load)
// reads the control vector and it is applied to every layer it has (link libllama-common.a).
#include "common.h"
#include "llama.h"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

static std::vector<double> log_softmax(const float* logits, int n) {
    double m = -INFINITY;
    for (int i = 0; i < n; ++i) m = std::max(m, (double)logits[i]);
    double s = 0;
    for (int i = 0; i < n; ++i) s += std::exp((double)logits[i] - m);
    const double lse = m + std::log(s);
    std::vector<double> out(n);
    for (int i = 0; i < n; ++i) out[i] = (double)logits[i] - lse;
    return out;
}

static int argmax(const float* logits, int n) {
    int best = 0;
    for (int i = 1; i < n; ++i)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static void decode(llama_context* ctx, const std::vector<llama_token>& ids, int pos0, bool all_logits) {
    llama_batch batch = llama_batch_init((int)ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); ++i) {
        batch.token[i] = ids[i];
        batch.pos[i] = pos0 + (int)i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = all_logits || i + 1 == ids.size();
    }
    batch.n_tokens = (int)ids.size();
    if (llama_decode(ctx, batch) != 0) {
        fprintf(stderr, "llama_decode failed\n");
        exit(1);
    }
    llama_batch_free(batch);
}

int main(int argc, char** argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s MODEL N_CTX N_THREADS N_GREEDY [single] < ids\n", argv[0]);
        return 2;
    }
    const bool single = argc == 6 && std::string(argv[5]) == "single";
    const int n_ctx = atoi(argv[2]), n_threads = atoi(argv[3]), n_greedy = atoi(argv[4]);
    llama_backend_init();
    llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) return 1;
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_ubatch = n_ctx;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    common_control_vector_data cvec{-1, {}};
    if (const char* spec = getenv("CVEC")) {
        std::string s(spec);
        const size_t colon = s.rfind(':');
        cvec = common_control_vector_load({{std::stof(s.substr(colon + 1)), s.substr(0, colon)}});
        if (cvec.n_embd == -1) return 1;
    }

    std::vector<std::vector<llama_token>> seqs;
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::vector<llama_token> ids;
        int id;
        while (in >> id) ids.push_back(id);
        if (!ids.empty()) seqs.push_back(ids);
    }
    std::cout.precision(17);
    for (size_t s = 0; s < seqs.size(); ++s) {
        const auto& ids = seqs[s];
        // A fresh context per sequence: nothing of one sequence's cache (its sliding-window
        // part included) can reach the next.
        llama_context* ctx = llama_init_from_model(model, cp);
        if (!ctx) return 1;
        if (cvec.n_embd > 0 &&
            llama_set_adapter_cvec(ctx, cvec.data.data(), cvec.data.size(), cvec.n_embd, 1,
                                   llama_model_n_layer(model)) != 0)
            return 1;
        if (s + 1 < seqs.size()) {
            std::ostringstream lp, top;
            lp.precision(17);
            if (!single) decode(ctx, ids, 0, true);
            for (size_t i = 0; i + 1 < ids.size(); ++i) {
                if (single) decode(ctx, {ids[i]}, (int)i, false);
                const float* l = llama_get_logits_ith(ctx, single ? -1 : (int)i);
                lp << " " << log_softmax(l, n_vocab)[ids[i + 1]];
                top << " " << argmax(l, n_vocab);
            }
            std::cout << "logprobs" << lp.str() << "\n" << "top1" << top.str() << "\n";
        } else {
            decode(ctx, ids, 0, false);
            std::ostringstream greedy, margins;
            margins.precision(6);
            int pos = (int)ids.size();
            for (int g = 0; g < n_greedy; ++g) {
                const float* l = llama_get_logits_ith(ctx, -1);
                const int next = argmax(l, n_vocab);
                // log-prob gap between the chosen token and the runner-up
                float second = -INFINITY;
                for (int i = 0; i < n_vocab; ++i)
                    if (i != next && l[i] > second) second = l[i];
                greedy << " " << next;
                margins << " " << (double)l[next] - (double)second;
                decode(ctx, {next}, pos++, false);
            }
            std::cout << "greedy" << greedy.str() << "\n" << "margins" << margins.str() << "\n";
        }
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
