//! A byte-level BPE tokenizer trained on the corpus with HF `tokenizers`, saved as `tokenizer.json`.
//! Byte-level means any text encodes (words outside the corpus become byte pieces).

use crate::error::{Error, Result};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, TokenizerBuilder};

/// The token that separates stories (also BOS and EOS of the models).
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Trains a BPE tokenizer of `vocab_size` tokens on `texts`; returns `tokenizer.json`.
pub fn train(texts: &[String], vocab_size: usize) -> Result<String> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer = TokenizerBuilder::<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>::default()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(byte_level.into()))
        .with_post_processor(Some(byte_level.into()))
        .with_decoder(Some(byte_level.into()))
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    tokenizer.train(&mut trainer, texts.iter()).map_err(|e| Error::Tokenizer(e.to_string()))?;
    tokenizer.to_string(true).map_err(|e| Error::Tokenizer(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::corpus::{Grammar, generate};

    #[test]
    fn the_trained_tokenizer_round_trips_stories_and_foreign_text() {
        let (stories, _) = generate(&Grammar::stories(), 3, 200);
        let texts: Vec<String> = stories.into_iter().map(|s| s.text).collect();
        let json = train(&texts, 400).unwrap();
        let tokenizer = analog_core::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        assert!(tokenizer.token_id(END_OF_TEXT).is_some());
        for text in texts.iter().take(20).map(String::as_str).chain(["Zebras 🦓 quantum-tunnel, naïvely!", "  spaces  "]) {
            let ids = tokenizer.encode(text).unwrap();
            assert_eq!(tokenizer.decode(&ids).unwrap(), text, "byte-level BPE loses nothing");
        }
        // Frequent words become single tokens.
        assert_eq!(tokenizer.encode(" happy").unwrap().len(), 1);
    }
}
