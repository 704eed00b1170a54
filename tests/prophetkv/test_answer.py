"""Questions over one's own documents: one reusable chunk per document, the store reused, the CLI's errors."""

import jax
import numpy as np
import pytest
from test_llm_evaluation import CONFIG, ByteTokenizer

from prophetkv_jax import answer as answer_lib
from prophetkv_jax.model import llama
from prophetkv_jax.pipeline import Engine
from prophetkv_jax.store import ChunkStore

DOCUMENTS = ["The cafe opens at 7 am.", "Maria Lopez owns the cafe since 2011.", "The ferry leaves from pier 4."]


class CountingStore(ChunkStore):
    """A memory store that counts the entries written into it (one per encoded segment)."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, key, entry):
        self.puts += 1
        super().put(key, entry)


@pytest.fixture()
def qa():
    engine = Engine(llama.init_params(CONFIG, jax.random.PRNGKey(0)), CONFIG, CountingStore(), max_new_tokens=16)
    return answer_lib.DocumentQA(engine, ByteTokenizer(), chunk_tokens=64)


def test_each_document_is_its_own_chunk_whatever_the_question():
    tok = ByteTokenizer()
    one = answer_lib.document_prompt(tok, DOCUMENTS, "Who owns the cafe?")
    two = answer_lib.document_prompt(tok, DOCUMENTS[::-1], "When does it open?")
    assert [tok.decode(c.tolist()) for c in one.chunks] == ["\n\n" + d for d in DOCUMENTS]
    assert [c.tolist() for c in one.chunks] == [c.tolist() for c in two.chunks[::-1]]
    rendered = tok.apply_chat_template([{"role": "user", "content": answer_lib.INSTRUCTION + "".join(
        "\n\n" + d for d in DOCUMENTS) + answer_lib.QUERY + "Who owns the cafe?"}])
    assert tok.decode(np.concatenate([one.prefix, *one.chunks, one.query]).tolist()) == rendered


def test_long_documents_are_cut_into_chunks():
    prompt = answer_lib.document_prompt(ByteTokenizer(), ["x" * 100, "short"], "q?", chunk_tokens=40)
    assert [len(c) for c in prompt.chunks] == [40, 40, 22, 7]


def test_a_second_question_reuses_the_documents_kvs(qa):
    first = qa.ask(DOCUMENTS, "Who owns the cafe?", "prophetkv", 0.2)
    assert (first.document_chunks, first.reused_chunks) == (3, 0)
    assert qa.engine.store.puts == 4  # the instruction prefix and the three documents
    second = qa.ask(DOCUMENTS[::-1], "When does the cafe open?", "prophetkv", 0.2)
    assert (second.document_chunks, second.reused_chunks) == (3, 3)
    assert qa.engine.store.puts == 4  # nothing encoded again
    third = qa.ask([*DOCUMENTS, "A new document."], "Which pier?", "epic", 0.5)
    assert (third.reused_chunks, qa.engine.store.puts) == (3, 5)


def test_compare_measures_the_method_on_full_prefills_answer(qa):
    full = qa.ask(DOCUMENTS, "Who owns the cafe?", "full", compare=True)
    assert full.text == full.full_text and full.kl == pytest.approx(0.0, abs=1e-9) and full.top1_agreement == 1.0
    naive = qa.ask(DOCUMENTS, "Who owns the cafe?", "naive", compare=True)
    assert naive.full_text == full.text and naive.kl > 0 and naive.recomputed == 0
    assert "fidelity: KL(full || naive)" in naive.describe()


@pytest.mark.parametrize(("argv", "message"), [
    (["--doc", "missing.txt", "q?"], "--doc missing.txt: cannot read it"),
    (["--doc", "{doc}", "--ratio", "1.5", "q?"], "--ratio"),
    (["--doc", "{doc}", "--method", "magic", "q?"], "--method"),
    (["--doc", "{doc}"], "questions"),
])
def test_cli_refuses_bad_arguments_in_one_line(tmp_path, capsys, monkeypatch, argv, message):
    doc = tmp_path / "a.txt"
    doc.write_text("text")
    monkeypatch.chdir(tmp_path)
    assert answer_lib.main([a.format(doc=doc) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_empty_documents_and_questions_are_refused():
    with pytest.raises(ValueError, match="document 2 is empty"):
        answer_lib.document_prompt(ByteTokenizer(), ["a", "  "], "q?")
    with pytest.raises(ValueError, match="no documents"):
        answer_lib.document_prompt(ByteTokenizer(), [], "q?")
