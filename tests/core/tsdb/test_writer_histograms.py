"""BlockWriter writing native histograms: the shared Prometheus 2.42 blocks rewritten from their decoded samples
come out with byte-identical chunks, and the real prometheus 2.42 answers the same for them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.core.pipeline.test_histogram_pipeline import EDGE, MAIN, SNAPSHOT, block_chunks
from tests.fixtures_prom import StartPrometheus, native_histogram_answers, needs_prometheus
from tests.sharedfiles import NATIVE_HISTOGRAMS_DIR
from thanostools.core.series import SampleBatch
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.writer import BlockWriter

pytestmark = pytest.mark.skipif(not NATIVE_HISTOGRAMS_DIR.is_dir(), reason="native-histogram test data missing")
T1 = 1796522400000
# Remote-write's reset hint YES is kept only in the header of the chunk it starts; decoded as 3.x does (hint
# unknown), sample 5 of this series no longer asks for a reset chunk.
HINT_ONLY_RESET = {"hint_yes"}


def rewritten(name: str, out: Path) -> Block:
    src = Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / name))
    writer = BlockWriter(str(out), chunk_range=7_200_000)
    writer.add_sample_batch(SampleBatch.concat(list(src.select(histograms=True))))
    return Block.open_dir(str(out / writer.finish().ulid))


@pytest.mark.parametrize("name", [MAIN, SNAPSHOT, EDGE])
def test_rewritten_blocks_have_the_head_chunks_byte_for_byte(tmp_path: Path, name: str) -> None:
    original = block_chunks(Block.open_dir(str(NATIVE_HISTOGRAMS_DIR / name)))
    written = block_chunks(rewritten(name, tmp_path))
    assert written.keys() == original.keys()
    differ = {dict(lab)["case"] for lab in original if written[lab] != original[lab]}
    assert differ == (HINT_ONLY_RESET if name == EDGE else set())



@needs_prometheus
def test_prometheus_answers_the_same_for_a_written_block(tmp_path: Path, prometheus_server: StartPrometheus) -> None:
    original = tmp_path / "prom-original"
    shutil.copytree(NATIVE_HISTOGRAMS_DIR / MAIN, original / Path(MAIN).name)
    written = tmp_path / "prom-written"
    written.mkdir()
    rewritten(MAIN, written)
    answers = native_histogram_answers(prometheus_server, [original, written], T1 + 2_890_000)
    assert answers[0][0]["data"]["result"] and answers[0] == answers[1]
