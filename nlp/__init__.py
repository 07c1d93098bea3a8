"""The classifier room: tokenizer, features, model, training, evaluation, model registry, seed corpus.

Entry points: `nlp.tokenizer` (normalise, tokenize, warm_up), `nlp.classifier.Classifier`,
`nlp.registry` (ModelRegistry, ensure_default_model, train_and_register), `nlp.training` (train,
load_seed_corpus, load_dataset), `nlp.cli` (the `classify` and `model` commands). See docs/classifier.md.
"""
