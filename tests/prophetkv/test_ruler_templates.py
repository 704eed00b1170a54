"""RULER's templates rendered literally: one seeded sample of every task against text written
here from NVIDIA RULER's constants.py and synthetic generators (singular wording for one asked
value, newline-joined noise/needle haystacks, vt's solved example and period-free chain
statements whose hops end in a space, cwe's solved example and space-joined list, fwe's Zipf
counts with '...' as the top-ranked word)."""

import json

import pytest

from prophetkv_jax.tasks import ruler

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
ESSAY = ("Alpha beta gamma delta. Epsilon zeta eta theta iota. Kappa lambda mu nu xi. Omicron pi rho sigma tau.\n"
         "Upsilon phi chi psi omega. One two three four. Five six seven eight nine.")

EXPECTED = {
    'niah_single_1': (228, ('2602107',), (
        ('A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about '
         'the number afterwards.\n'),
        'One of the special magic numbers for puffy-fiberglass is: 2602107.\n',
        NOISE + "\n",
        NOISE + "\n",
        ('What is the special magic number for puffy-fiberglass mentioned in the provided text? The special magic '
         'number for puffy-fiberglass mentioned in the provided text is'),
    )),
    'niah_single_2': (198, ('7895650',), (
        ('A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about '
         'the number afterwards.\n'),
        ('Alpha beta gamma delta. One of the special magic numbers for gentle-armour is: 7895650. Epsilon zeta eta '
         'theta iota.\n'),
        ('What is the special magic number for gentle-armour mentioned in the provided text? The special magic number '
         'for gentle-armour mentioned in the provided text is'),
    )),
    'niah_single_3': (198, ('6cb43519-245e-42d8-9f6a-6f1c887719fc',), (
        ('A special magic uuid is hidden within the following text. Make sure to memorize it. I will quiz you about '
         'the uuid afterwards.\n'),
        ('Alpha beta gamma delta. One of the special magic uuids for watchful-outhouse is: '
         '6cb43519-245e-42d8-9f6a-6f1c887719fc. Epsilon zeta eta theta iota.\n'),
        ('What is the special magic uuid for watchful-outhouse mentioned in the provided text? The special magic uuid '
         'for watchful-outhouse mentioned in the provided text is'),
    )),
    'niah_multikey_1': (223, ('1836408',), (
        ('A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about '
         'the number afterwards.\n'),
        (' One of the special magic numbers for testy-sweat is: 3467992.  One of the special magic numbers for '
         'strange-canopy is: 2396116.  One of the special magic numbers for alcoholic-licorice is: 8010937.  One of '
         'the special magic numbers for tan-sickness is: 1836408. Alpha beta gamma delta.\n'),
        ('What is the special magic number for tan-sickness mentioned in the provided text? The special magic number '
         'for tan-sickness mentioned in the provided text is'),
    )),
    'niah_multikey_2': (208, ('3657712',), (
        ('A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about '
         'the number afterwards.\n'),
        'One of the special magic numbers for stupid-bronchitis is: 3657712.\n',
        'One of the special magic numbers for robust-airline is: 6460743.\n',
        'One of the special magic numbers for many-brink is: 5378269.\n',
        ('What is the special magic number for stupid-bronchitis mentioned in the provided text? The special magic '
         'number for stupid-bronchitis mentioned in the provided text is'),
    )),
    'niah_multikey_3': (198, ('f8d99c59-9def-4986-b86e-8505cd5e656d',), (
        ('A special magic uuid is hidden within the following text. Make sure to memorize it. I will quiz you about '
         'the uuid afterwards.\n'),
        ('One of the special magic uuids for a7bb9ac2-1bf7-4e2f-8a7d-c0507270d106 is: '
         'f8d99c59-9def-4986-b86e-8505cd5e656d.\n'),
        ('One of the special magic uuids for 9674411c-665b-44cb-baea-a024dc18b6d4 is: '
         '79982fcb-b863-45d1-af33-6f7b51ed32ab.\n'),
        ('What is the special magic uuid for a7bb9ac2-1bf7-4e2f-8a7d-c0507270d106 mentioned in the provided text? The '
         'special magic uuid for a7bb9ac2-1bf7-4e2f-8a7d-c0507270d106 mentioned in the provided text is'),
    )),
    'niah_multivalue': (228, ('5165623', '4790034', '7247503', '2084542'), (
        ('Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you '
         'about the numbers afterwards.\n'),
        (' One of the special magic numbers for jumbled-insight is: 7247503.  One of the special magic numbers for '
         'jumbled-insight is: 2084542. Alpha beta gamma delta. One of the special magic numbers for jumbled-insight '
         'is: 5165623.  One of the special magic numbers for jumbled-insight is: 4790034. Epsilon zeta eta theta '
         'iota.\n'),
        ('What are all the special magic numbers for jumbled-insight mentioned in the provided text? The special magic '
         'numbers for jumbled-insight mentioned in the provided text are'),
    )),
    'niah_multiquery': (238, ('1366103', '7938375', '6943529', '9506609'), (
        ('Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you '
         'about the numbers afterwards.\n'),
        (' One of the special magic numbers for deafening-gambling is: 6943529.  One of the special magic numbers for '
         'sticky-die is: 9506609. Alpha beta gamma delta. One of the special magic numbers for fertile-hepatitis is: '
         '7938375.  One of the special magic numbers for honorable-geography is: 1366103. Epsilon zeta eta theta '
         'iota.\n'),
        ('What are all the special magic numbers for honorable-geography, fertile-hepatitis, deafening-gambling, and '
         'sticky-die mentioned in the provided text? The special magic numbers for honorable-geography, '
         'fertile-hepatitis, deafening-gambling, and sticky-die mentioned in the provided text are'),
    )),
    'vt': (427, ('BSYMD', 'TAVPP', 'XNUSO', 'NSHOM', 'OJWWZ'), (
        'Memorize and track the chain(s) of variable assignment hidden in the following text.\n',
        '\n',
        'VAR CGQ = 35417\n',
        NOISE + "\n",
        'VAR RQC = VAR CGQ \n',
        NOISE + "\n",
        NOISE + "\n",
        'VAR QHD = VAR RQC \n',
        NOISE + "\n",
        'VAR KIB = VAR QHD \n',
        NOISE + "\n",
        'VAR ATE = VAR KIB \n',
        NOISE + "\n",
        ('Question: Find all variables that are assigned the value 35417 in the text above. Answer: According to the '
         'chain(s) of variable assignment in the text above, 5 variables are assigned the value 35417, they are:  CGQ '
         'RQC QHD KIB ATE\n'),
        '\n',
        'Memorize and track the chain(s) of variable assignment hidden in the following text.\n',
        '\n',
        NOISE + "\n",
        'VAR BSYMD = 32453\n',
        NOISE + "\n",
        NOISE + "\n",
        'VAR TAVPP = VAR BSYMD \n',
        NOISE + "\n",
        'VAR XNUSO = VAR TAVPP \n',
        NOISE + "\n",
        'VAR NSHOM = VAR XNUSO \n',
        NOISE + "\n",
        'VAR OJWWZ = VAR NSHOM \n',
        NOISE + "\n",
        ('Question: Find all variables that are assigned the value 32453 in the text above. Answer: According to the '
         'chain(s) of variable assignment in the text above, 5 variables are assigned the value 32453, they are: '),
    )),
    'cwe': (500, ('murder', 'beret', 'peek', 'load', 'impression', 'defiant', 'judgment', 'wardrobe', 'compensation',
                  'steeple'), (
        ('Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones '
         'that appear most often.\n'),
        ('1. psychedelic 2. backpack 3. elderly 4. authorization 5. snuggle 6. strobe 7. likelihood 8. vegetable 9. '
         'joy 10. backpack 11. subway 12. vegetable 13. likelihood 14. bladder 15. tenet 16. preside 17. difference '
         '18. apricot 19. lime 20. apricot 21. diction 22. tenet 23. win 24. moonscape 25. backpack 26. win 27. '
         'elderly 28. moonscape 29. elderly 30. difference 31. vegetable 32. moonscape 33. win 34. apricot 35. '
         'difference 36. tenet 37. subway 38. frightened 39. likelihood 40. subway\n'),
        ('Question: What are the 10 most common words in the above list? Answer: The top 10 words that appear most '
         'often in the list are: 1. moonscape 2. vegetable 3. elderly 4. difference 5. likelihood 6. win 7. apricot 8. '
         'backpack 9. tenet 10. subway\n'),
        ('Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones '
         'that appear most often.\n'),
        ('1. bull 2. impression 3. judgment 4. compensation 5. coconut 6. peek 7. steeple 8. murder 9. compensation '
         '10. eagle 11. castanet 12. homework 13. stitch 14. judgment 15. steeple 16. wardrobe 17. snowsuit 18. '
         'icecream 19. warden 20. defiant 21. compensation 22. defiant 23. judgment 24. load 25. sloth 26. tortilla '
         '27. murder 28. strawberry 29. wardrobe 30. defiant 31. wardrobe 32. peek 33. load 34. scorpion 35. peek 36. '
         'murder 37. description 38. kendo 39. compensation 40. judgment 41. junker 42. peek 43. defiant 44. load 45. '
         'hive 46. beret 47. defiant 48. peek 49. servant 50. load 51. wardrobe 52. impression 53. walrus 54. unibody '
         '55. ecosystem 56. beret 57. onerous 58. steeple 59. target 60. stiletto 61. steeple 62. load 63. murder 64. '
         'sauce 65. murder 66. murder 67. wardrobe 68. wardrobe 69. impression 70. impression 71. impression 72. '
         'agriculture 73. competitor 74. beret 75. photoreceptor 76. beret 77. peek 78. compensation 79. defiant 80. '
         'impression 81. beret 82. pasta 83. outset 84. beret 85. landform 86. load 87. judgment 88. judgment 89. '
         'steeple 90. yurt 91. steeple 92. compensation\n'),
        ('Question: What are the 10 most common words in the above list? Answer: The top 10 words that appear most '
         'often in the list are:'),
    )),
    'fwe': (280, ('fatheb', 'rpvbor', 'wnojon'), (
        ('Read the following coded text and track the frequency of each coded word. Find the three most '
         'frequently appeared coded words. wnojon wnojon ... ... ... ... ... rpvbor ... fatheb fatheb ... ... ... '
         '... ... ... fatheb ... ... ... ... ... fatheb ... ... fatheb ... ... ... ... ... ... wnojon fatheb '
         'fatheb ... ... ... ... fatheb fatheb ... ... fatheb wnojon ... rpvbor fatheb fatheb ... ... ... rpvbor '
         '... ... ... ... ... ... ... ... ... rpvbor ... rpvbor ... ... ... ... ... ... ... ... rpvbor ... rpvbor '
         'rpvbor ... ... ... ... ... wnojon ... ... ... fatheb ... ... ... fatheb ... ... ... fatheb ... rpvbor '
         'fatheb ... rpvbor ... ... fatheb ... ... ... fatheb ... fatheb ... ... ... ... ... ... ... fatheb ... '
         'fatheb ... ... fatheb ... ... ... fatheb ... ... ... wnojon ... ... ... ... ... ... ... fatheb ... ... '
         '... ... rpvbor fatheb rpvbor ... fatheb fatheb fatheb ... ... ... ... rpvbor ... ... ... wnojon ... '
         'fatheb ... ... ... ... ... ... ... fatheb ...\n'),
        ("Question: Do not provide any explanation. Please ignore the dots '....'. What are the three most "
         'frequently appeared words in the above coded text? Answer: According to the coded text above, the three '
         'most frequently appeared words are:')
    )),
    'qa_1': (112, ('55',), (
        ('Answer the question based on the given documents. Only give me the answer and do not output any other '
         'words.\n'),
        '\n',
        'The following are given documents.\n',
        '\n',
        'Document 1:\n',
        'Paragraph 0 says the code is 0.\n',
        '\n',
        'Document 2:\n',
        'Paragraph 5 says the code is 55.\n',
        '\n',
        'Document 3:\n',
        'Paragraph 4 says the code is 44.\n',
        '\n',
        ('Answer the question based on the given documents. Only give me the answer and do not output any other '
         'words.\n'),
        '\n',
        'Question: What code does paragraph 5 give? Answer:',
    )),
    'qa_2': (122, ('Founder0',), (
        ('Answer the question based on the given documents. Only give me the answer and do not output any other '
         'words.\n'),
        '\n',
        'The following are given documents.\n',
        '\n',
        'Document 1:\nRiver 0\nRiver 0 is long.\n',
        '\n',
        'Document 2:\nRiver 1\nRiver 1 is long.\n',
        '\n',
        'Document 3:\nRiver 3\nRiver 3 is long.\n',
        '\n',
        'Document 4:\nTown 0\nTown 0 was founded by Founder0. It is small.\n',
        '\n',
        ('Answer the question based on the given documents. Only give me the answer and do not output any other '
         'words.\n'),
        '\n',
        'Question: Who founded town 0? Answer:',
    )),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ruler_sources")
    (folder / "essay.txt").write_text(ESSAY)
    squad = {"data": [{"paragraphs": [
        {"context": f"Paragraph {i} says the code is {i * 11}.",
         "qas": [{"question": f"What code does paragraph {i} give?", "answers": [{"text": str(i * 11)}]}]}
        for i in range(6)]}]}
    (folder / "squad.json").write_text(json.dumps(squad))
    hotpotqa = [{"question": f"Who founded town {i}?", "answer": f"Founder{i}", "context": [
        [f"Town {i}", [f"Town {i} was founded by Founder{i}.", " It is small."]],
        [f"River {i}", [f"River {i} is long."]]]}
        for i in range(4)]
    (folder / "hotpotqa.json").write_text(json.dumps(hotpotqa))
    return folder


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_one_sample_of_every_task_renders_rulers_text(task, sources, monkeypatch):
    # vt in steps of one noise row and a 230-token example (RULER: 10 and 5 rows, 500) keep the text a page long;
    # the steps themselves are tested with the sizing, in test_ruler.py
    monkeypatch.setattr(ruler, "VT_EXAMPLE_TOKENS", 230)
    monkeypatch.setattr(ruler, "VT_EXAMPLE_STEP", 1)
    monkeypatch.setattr(ruler, "VT_STEP", 1)
    context, references, lines = EXPECTED[task]
    sample = ruler.generate(task, 1, context, lambda text: len(text.split()), seed=7,
                            haystack_dir=str(sources), squad_path=str(sources / "squad.json"),
                            hotpotqa_path=str(sources / "hotpotqa.json"))[0]
    assert sample.prompt == "".join(lines)
    assert sample.references == references


def test_key_pool_is_rulers_full_adjective_noun_product():
    """niah.py: ``sorted(set(f"{adj}-{noun}" for adj in adjs for noun in nouns))`` over wonderwords'
    lists as its own reader returns them (912 x 6,782; a pool of the first 300 of each, whose nouns all
    begin with "a", made distractors share the queried key's adjective or noun ~23% of the time)."""
    from wonderwords import random_word

    adjectives = random_word._get_words_from_text_file("adjectivelist.txt")
    nouns = random_word._get_words_from_text_file("nounlist.txt")
    assert (len(adjectives), len(nouns)) == (912, 6782)
    expected = {f"{a}-{n}" for a in adjectives for n in nouns}
    pool = ruler.key_words()
    assert len(pool) == len(expected) == 6_171_620
    assert all(a < b for a, b in zip(pool, pool[1:]))  # sorted, no repeats: with the length, one set
    assert all(key in expected for key in pool[::101])
    assert pool[0] == min(expected) and pool[-1] == max(expected)


@pytest.mark.parametrize(("task", "budget"), [("niah_single_1", 128), ("niah_multivalue", 128), ("vt", 30),
                                              ("cwe", 120), ("fwe", 50)])
def test_answer_budgets_are_rulers_tokens_to_generate(task, budget):
    """constants.py's tokens_to_generate: the prompt leaves that room and decoding may use all of it."""
    sample = ruler.generate(task, 1, 700, lambda text: len(text.split()), seed=1)[0]
    assert sample.max_new_tokens == budget
    assert len(sample.prompt.split()) <= 700 - budget
