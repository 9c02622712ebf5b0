"""DistilBertTokenizer: a WordPiece tokenizer on the Rust `tokenizers` library whose output matches
transformers' DistilBertTokenizerFast (`from distilbert_fast.tokenization import DistilBertTokenizer`).

One module per concern; DistilBertTokenizer combines their mixins:
  * tokenizer.py       the class: construction, the normaliser / pre-tokenizer / template set-up;
  * encoding.py        __call__ (pairs, batches, pre-split words, text_target), encode, tokenize;
  * padding.py         pad() on already-encoded inputs (data collators);
  * decoding.py        decode, batch_decode, clean_up_tokenization;
  * vocabulary.py      vocabulary lookups, add_tokens / add_special_tokens, special tokens and their ids;
  * files.py           from_pretrained / save_pretrained, tokenizer.json / vocab.txt / config reading;
  * batch_encoding.py  BatchEncoding (what a call returns), TokenSpan, CharSpan;
  * arguments.py       transformers' argument rules (padding / truncation strategies, text batching).
"""

from .arguments import LARGE_INTEGER, VERY_LARGE_INTEGER, TokenizerInputError
from .batch_encoding import BatchEncoding, CharSpan, TokenSpan
from .decoding import clean_up_tokenization
from .files import SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VOCAB_FILE
from .tokenizer import DistilBertTokenizer, DistilBertTokenizerFast

__all__ = [
    "LARGE_INTEGER",
    "SPECIAL_TOKENS_MAP_FILE",
    "TOKENIZER_CONFIG_FILE",
    "TOKENIZER_FILE",
    "VERY_LARGE_INTEGER",
    "VOCAB_FILE",
    "BatchEncoding",
    "CharSpan",
    "DistilBertTokenizer",
    "DistilBertTokenizerFast",
    "TokenSpan",
    "TokenizerInputError",
    "clean_up_tokenization",
]
