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
        'A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n',
        'One of the special magic numbers for round-accelerator is: 2602107.\n',
        NOISE + "\n",
        NOISE + "\n",
        'What is the special magic number for round-accelerator mentioned in the provided text? The special magic number for round-accelerator mentioned in the provided text is',
    )),
    'niah_single_2': (198, ('7895650',), (
        'A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n',
        'Alpha beta gamma delta. One of the special magic numbers for great-anchovy is: 7895650. Epsilon zeta eta theta iota.\n',
        'What is the special magic number for great-anchovy mentioned in the provided text? The special magic number for great-anchovy mentioned in the provided text is',
    )),
    'niah_single_3': (198, ('c4502baf-6cb4-4519-a45e-72d81f6a6f1c',), (
        'A special magic uuid is hidden within the following text. Make sure to memorize it. I will quiz you about the uuid afterwards.\n',
        'Alpha beta gamma delta. One of the special magic uuids for soggy-architecture is: c4502baf-6cb4-4519-a45e-72d81f6a6f1c. Epsilon zeta eta theta iota.\n',
        'What is the special magic uuid for soggy-architecture mentioned in the provided text? The special magic uuid for soggy-architecture mentioned in the provided text is',
    )),
    'niah_multikey_1': (223, ('1836408',), (
        'A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n',
        ' One of the special magic numbers for voiceless-alb is: 3467992.  One of the special magic numbers for ultra-anguish is: 2396116.  One of the special magic numbers for ambiguous-aim is: 8010937.  One of the special magic numbers for vacuous-abnormality is: 1836408. Alpha beta gamma delta.\n',
        'What is the special magic number for vacuous-abnormality mentioned in the provided text? The special magic number for vacuous-abnormality mentioned in the provided text is',
    )),
    'niah_multikey_2': (208, ('3657712',), (
        'A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n',
        'One of the special magic numbers for unadvised-air is: 3657712.\n',
        'One of the special magic numbers for somber-alloy is: 6460743.\n',
        'One of the special magic numbers for narrow-alley is: 5378269.\n',
        'What is the special magic number for unadvised-air mentioned in the provided text? The special magic number for unadvised-air mentioned in the provided text is',
    )),
    'niah_multikey_3': (198, ('f8d99c59-9def-4986-b86e-8505cd5e656d',), (
        'A special magic uuid is hidden within the following text. Make sure to memorize it. I will quiz you about the uuid afterwards.\n',
        'One of the special magic uuids for a7bb9ac2-1bf7-4e2f-8a7d-c0507270d106 is: f8d99c59-9def-4986-b86e-8505cd5e656d.\n',
        'One of the special magic uuids for 9674411c-665b-44cb-baea-a024dc18b6d4 is: 79982fcb-b863-45d1-af33-6f7b51ed32ab.\n',
        'What is the special magic uuid for a7bb9ac2-1bf7-4e2f-8a7d-c0507270d106 mentioned in the provided text? The special magic uuid for a7bb9ac2-1bf7-4e2f-8a7d-c0507270d106 mentioned in the provided text is',
    )),
    'niah_multivalue': (228, ('5165623', '4790034', '7247503', '2084542'), (
        'Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n',
        ' One of the special magic numbers for level-airplane is: 7247503.  One of the special magic numbers for level-airplane is: 2084542. Alpha beta gamma delta. One of the special magic numbers for level-airplane is: 5165623.  One of the special magic numbers for level-airplane is: 4790034. Epsilon zeta eta theta iota.\n',
        'What are all the special magic numbers for level-airplane mentioned in the provided text? The special magic numbers for level-airplane mentioned in the provided text are',
    )),
    'niah_multiquery': (238, ('1366103', '7938375', '6943529', '9506609'), (
        'Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n',
        ' One of the special magic numbers for deafening-affinity is: 6943529.  One of the special magic numbers for ubiquitous-army is: 9506609. Alpha beta gamma delta. One of the special magic numbers for flaky-affair is: 7938375.  One of the special magic numbers for hypnotic-angina is: 1366103. Epsilon zeta eta theta iota.\n',
        'What are all the special magic numbers for hypnotic-angina, flaky-affair, deafening-affinity, and ubiquitous-army mentioned in the provided text? The special magic numbers for hypnotic-angina, flaky-affair, deafening-affinity, and ubiquitous-army mentioned in the provided text are',
    )),
    'vt': (430, ('BSYMD', 'TAVPP', 'XNUSO', 'NSHOM', 'OJWWZ'), (
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
        'Question: Find all variables that are assigned the value 35417 in the text above. Answer: According to the chain(s) of variable assignment in the text above, 5 variables are assigned the value 35417, they are:  CGQ RQC QHD KIB ATE\n',
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
        'Question: Find all variables that are assigned the value 32453 in the text above. Answer: According to the chain(s) of variable assignment in the text above, 5 variables are assigned the value 32453, they are: ',
    )),
    'cwe': (500, ('neighbour', 'bestseller', 'pheasant', 'lox', 'inflation', 'den', 'kilogram', 'whorl', 'complication', 'stucco'), (
        'Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n',
        '1. mislead 2. pumpkinseed 3. flippant 4. fog 5. dial 6. shift 7. hunting 8. scallion 9. pumpkinseed 10. flippant 11. waffle 12. hunting 13. resolute 14. birdhouse 15. glider 16. dial 17. dough 18. hunting 19. birdhouse 20. baby 21. neonate 22. neonate 23. neonate 24. secrecy 25. birdhouse 26. secrecy 27. dial 28. fog 29. mislead 30. everything 31. flippant 32. glider 33. server 34. pumpkinseed 35. fog 36. mislead 37. stone 38. glider 39. pressurization 40. secrecy\n',
        'Question: What are the 10 most common words in the above list? Answer: The top 10 words that appear most often in the list are: 1. neonate 2. mislead 3. dial 4. pumpkinseed 5. flippant 6. hunting 7. glider 8. fog 9. secrecy 10. birdhouse\n',
        'Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n',
        '1. ahead 2. neighbour 3. complication 4. bestseller 5. inflation 6. neighbour 7. stucco 8. egghead 9. kilogram 10. kilogram 11. spade 12. lox 13. pheasant 14. hospital 15. shofar 16. wholesaler 17. inflation 18. whorl 19. resistance 20. den 21. outlet 22. pith 23. stucco 24. lox 25. kitty 26. den 27. whorl 28. inflation 29. inflation 30. complication 31. inflation 32. comportment 33. neighbour 34. housing 35. bestseller 36. stucco 37. neighbour 38. whorl 39. kilogram 40. ecliptic 41. pheasant 42. den 43. lox 44. lox 45. screen 46. complication 47. neighbour 48. stucco 49. neighbour 50. catcher 51. stucco 52. lox 53. bunghole 54. coil 55. whorl 56. pheasant 57. inflation 58. complication 59. whisker 60. semantics 61. den 62. complication 63. pendant 64. subtract 65. lox 66. kilogram 67. whorl 68. stucco 69. sunbonnet 70. bestseller 71. pamphlet 72. detective 73. bestseller 74. bestseller 75. complication 76. den 77. bestseller 78. leash 79. knuckle 80. pheasant 81. trombone 82. whorl 83. texture 84. impossible 85. kilogram 86. den 87. pheasant 88. solve 89. subroutine 90. pheasant 91. verbalize 92. kilogram\n',
        'Question: What are the 10 most common words in the above list? Answer: The top 10 words that appear most often in the list are:',
    )),
    'fwe': (280, ('fatheb', 'rpvbor', 'wnojon'), (
        'Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. ... ... rpvbor ... ... ... ... fatheb wnojon ... ... ... ... fatheb fatheb ... ... ... ... ... wnojon ... fatheb rpvbor ... ... ... ... fatheb ... ... fatheb ... ... ... ... ... ... fatheb ... ... fatheb ... wnojon ... ... fatheb ... wnojon ... ... fatheb ... ... ... ... fatheb fatheb ... ... ... ... ... rpvbor ... ... rpvbor ... ... wnojon ... ... ... ... ... rpvbor ... rpvbor rpvbor ... ... ... ... ... fatheb ... ... fatheb fatheb ... ... ... fatheb ... ... rpvbor fatheb ... rpvbor fatheb ... rpvbor ... ... fatheb ... ... ... fatheb ... ... ... ... ... ... ... ... ... fatheb ... fatheb ... ... fatheb ... ... ... ... ... ... ... wnojon ... ... ... ... ... ... ... fatheb ... ... ... ... rpvbor fatheb rpvbor ... fatheb fatheb fatheb ... ... ... ... rpvbor ... ... ... wnojon ... fatheb ... ... ... ... ... ... ... fatheb ...\n',
        "Question: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text? Answer: According to the coded text above, the three most frequently appeared words are:"
    )),
    'qa_1': (112, ('55',), (
        'Answer the question based on the given documents. Only give me the answer and do not output any other words.\n',
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
        'Answer the question based on the given documents. Only give me the answer and do not output any other words.\n',
        '\n',
        'Question: What code does paragraph 5 give? Answer:',
    )),
    'qa_2': (122, ('Founder0',), (
        'Answer the question based on the given documents. Only give me the answer and do not output any other words.\n',
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
        'Answer the question based on the given documents. Only give me the answer and do not output any other words.\n',
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
        [f"Town {i}", [f"Town {i} was founded by Founder{i}.", " It is small."]], [f"River {i}", [f"River {i} is long."]]]}
        for i in range(4)]
    (folder / "hotpotqa.json").write_text(json.dumps(hotpotqa))
    return folder


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_one_sample_of_every_task_renders_rulers_text(task, sources, monkeypatch):
    monkeypatch.setattr(ruler, "VT_EXAMPLE_TOKENS", 200)  # RULER's 500 would make vt's example page-long
    context, references, lines = EXPECTED[task]
    sample = ruler.generate(task, 1, context, lambda text: len(text.split()), seed=7,
                            haystack_dir=str(sources), squad_path=str(sources / "squad.json"),
                            hotpotqa_path=str(sources / "hotpotqa.json"))[0]
    assert sample.prompt == "".join(lines)
    assert sample.references == references
