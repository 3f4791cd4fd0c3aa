PYTHON ?= python3
STEPS ?= 40000

.PHONY: install test train pack gpu-bundle profile width-cost bench bench-quick bench-ray fuzz golden readme ci montage web bench-web

install:  ## install sicc with training, benchmark and test extras
	$(PYTHON) -m pip install -e ".[dev]"

test:  ## the test suite (tiny models; a few smoke tests of the shipped weights)
	$(PYTHON) -m pytest -q

train:  ## continue training from the shipped weights on this CPU (runs/main/checkpoint.pt, log.jsonl)
	$(PYTHON) -m sicc.train run --init shipped --steps $(STEPS) --precision auto --channels-last --out runs/main

pack:  ## a <= 40 MB crop pack to carry training to a GPU machine
	$(PYTHON) -m sicc.train pack -o crops.npz

gpu-bundle:  ## gpu-bundle/{photos,weights}: what a GPU burst carries, one part a command (docs/training.md)
	$(PYTHON) -m sicc.train bundle -o gpu-bundle

profile:  ## where a training step's time goes on this machine (fp32 vs bf16, channels_last)
	$(PYTHON) -m sicc.train profile

width-cost:  ## training step and Kodak decode time of the shipped network widened to 96 and 128 channels
	$(PYTHON) scripts/width_cost.py --steps 16 --threads 2

bench:  ## the full Kodak benchmark: bench/results.json, bench/rd.png, README tables
	$(PYTHON) -m sicc.bench run
	$(PYTHON) -m sicc.bench readme

bench-quick:
	$(PYTHON) -m sicc.bench run --quick --out /tmp/sicc-bench-quick

bench-ray:  ## Ray (2 actors) against `sicc encode -j 2` on the 24 Kodak images (needs the ray extra; docs/cluster.md)
	$(PYTHON) -m sicc.bench.ray_speed

fuzz:  ## 30 minutes of fuzzing (API and command writers): 20 with the tiny model, 10 with the shipped one
	$(PYTHON) -m tests.fuzz --seconds 1200; tiny=$$?; \
	$(PYTHON) -m tests.fuzz --seconds 600 --weights shipped; shipped=$$?; \
	exit $$(( tiny || shipped ))

golden:  ## re-make the committed golden file (only when the format or model changes on purpose)
	$(PYTHON) -m tests.make_golden

ci:
	bash .ci/run

KODAK ?= ../shared/data/kodak
montage:  ## the README figure docs/montage.png: kodim23, shipped model, levels 1-16, 3 samples (scaled, 256 colours)
	$(PYTHON) -m sicc.cli encode $(KODAK)/kodim23.png -o /tmp/sicc-montage.sic -q
	$(PYTHON) -m sicc.cli montage /tmp/sicc-montage.sic -o /tmp/sicc-montage.png --levels 1,2,4,8,16 \
		--samples 3 --seed 0 --original $(KODAK)/kodim23.png --tile-width 224
	$(PYTHON) -c "from PIL import Image; Image.open('/tmp/sicc-montage.png').quantize(256).save('docs/montage.png', optimize=True)"

web:  ## the JavaScript decoder's page: npm packages, model bundle and onnxruntime-web in web/ (serve: python -m http.server -d web)
	cd web && npm ci --no-audit --no-fund && SICC_PYTHON=$(PYTHON) npm run build

bench-web:  ## decode time of a Kodak image in node and headless Chromium beside the Python decoder (web/bench/bench.mjs)
	cd web && SICC_PYTHON=$(PYTHON) npm run bench --silent
