"""Write N random schedule-fidelity scenarios, to hunt for differences between servesim and vLLM.

    python scripts/fuzz_scenarios.py SEED N DIR
    servesim validate record DIR/*.yaml -o DIR/traces && servesim validate schedule DIR/*.yaml --against DIR/traces

Random block sizes, budgets, sequence caps, caches from roomy to barely larger than max_model_len, thresholds,
prefix caching on or off, prefix groups and arrivals. A scenario that differs is a candidate for tests/golden/.
"""

import random
import sys
from pathlib import Path

import yaml


def scenario(rng: random.Random, seed: int) -> dict:
    bs = rng.choice([32, 32, 64, 128])
    mml = rng.choice([512, 1024])
    least = mml // bs + 1
    blocks = rng.randint(least, least + 11) if rng.random() < 0.5 else rng.randint(least + 1, 4 * least)
    engine = dict(block_size=bs, num_gpu_blocks=blocks, max_num_batched_tokens=rng.choice([64, 128, 256, 512, 2048]),
                  max_num_seqs=rng.choice([2, 4, 8, 16, 64]), max_model_len=mml,
                  enable_prefix_caching=rng.random() < 0.8, long_prefill_token_threshold=rng.choice([0, 0, 0, 40, 100]))
    requests = []
    for _ in range(rng.randint(1, 3)):
        item = {"generate": rng.randint(3, 30), "prompt": [1, rng.randint(2, mml // 2)],
                "output": [1, rng.randint(1, mml // 3)], "arrival_step": [0, rng.choice([0, 10, 60, 200])]}
        if rng.random() < 0.6:
            item["groups"] = [f"g{i}" for i in range(rng.randint(1, 3))]
            item["prefix"] = [1, rng.randint(2, mml // 2)]
        requests.append(item)
    return {"seed": seed, "engine": engine, "requests": requests}


def main() -> None:
    seed, n, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        rng = random.Random(seed * 1000 + k)
        (out / f"fuzz{seed}_{k:03d}.yaml").write_text(yaml.safe_dump(scenario(rng, k), sort_keys=False))


if __name__ == "__main__":
    main()
