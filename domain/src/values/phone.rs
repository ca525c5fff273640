use std::fmt;

use phonenumber::{Mode, Type, country};
use serde::{Deserialize, Serialize};

use super::ValueError;

/// A mobile phone number in E.164 form (`+31612345678`), used only to send verification codes.
///
/// Deserialisation trusts the stored form: numbering plans change, persisted events must load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MobileNumber(String);

const MAX_INPUT_LEN: usize = 32;

impl MobileNumber {
    /// Parses a number as typed; national numbers are read as Dutch (`06 12345678`).
    ///
    /// Numbers whose type is mobile, or mobile-or-fixed where the numbering plan cannot tell
    /// (as in North America), are accepted; fixed lines, premium and shared-cost numbers are not.
    ///
    /// # Errors
    /// [`ValueError::PhoneMalformed`] or [`ValueError::PhoneNotMobile`].
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.len() > MAX_INPUT_LEN {
            return Err(ValueError::PhoneMalformed);
        }
        let number = phonenumber::parse(Some(country::Id::NL), trimmed)
            .map_err(|_| ValueError::PhoneMalformed)?;
        if !phonenumber::is_valid(&number) {
            return Err(ValueError::PhoneMalformed);
        }
        match number.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile => {}
            _ => return Err(ValueError::PhoneNotMobile),
        }
        Ok(Self(number.format().mode(Mode::E164).to_string()))
    }

    /// The E.164 form, for the SMS provider only. Never log it: use [`MobileNumber::masked`].
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// The country calling code (`31` for the Netherlands), for per-country send limits.
    pub fn country_calling_code(&self) -> u16 {
        phonenumber::parse(None, &self.0).map_or(0, |number| number.code().value())
    }

    /// The number with all but the country code prefix and the last two digits hidden,
    /// as support views and logs show it: `+31*******78`.
    pub fn masked(&self) -> String {
        super::masking::phone(&self.0)
    }
}

impl fmt::Display for MobileNumber {
    /// Shows the masked form, so that a number never lands in a log by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_mobile_numbers_in_any_common_notation() {
        for input in [
            "06 12345678",
            "+31 6 1234 5678",
            "0031612345678",
            "+31612345678",
        ] {
            assert_eq!(
                MobileNumber::parse(input).unwrap().e164(),
                "+31612345678",
                "input {input:?}"
            );
        }
        assert_eq!(
            MobileNumber::parse("+44 7911 123456").unwrap().e164(),
            "+447911123456"
        );
    }

    #[test]
    fn refuses_fixed_lines_and_garbage() {
        let cases = [
            (
                "020 123 4567",
                ValueError::PhoneNotMobile,
                "Amsterdam fixed line",
            ),
            ("0900 1234567", ValueError::PhoneNotMobile, "premium rate"),
            ("12345", ValueError::PhoneMalformed, "too short"),
            ("", ValueError::PhoneMalformed, "empty"),
            ("call me maybe", ValueError::PhoneMalformed, "words"),
            (
                "+31 6 1234 5678 9999 9999 9999 9999",
                ValueError::PhoneMalformed,
                "too long",
            ),
        ];
        for (input, expected, why) in cases {
            assert_eq!(
                MobileNumber::parse(input),
                Err(expected),
                "{why}: {input:?}"
            );
        }
    }

    #[test]
    fn knows_its_country_calling_code() {
        assert_eq!(
            MobileNumber::parse("06 12345678")
                .unwrap()
                .country_calling_code(),
            31
        );
        assert_eq!(
            MobileNumber::parse("+44 7911 123456")
                .unwrap()
                .country_calling_code(),
            44
        );
    }

    #[test]
    fn display_and_masked_never_show_the_middle_digits() {
        let number = MobileNumber::parse("+31612345678").unwrap();
        assert_eq!(number.masked(), "+31*******78");
        assert_eq!(number.to_string(), "+31*******78");
        assert!(!format!("{number:?}").is_empty());
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(input in "\\PC{0,40}") {
            let _ = MobileNumber::parse(&input);
        }

        #[test]
        fn every_dutch_mobile_number_normalises_to_e164(rest in "[1-5][0-9]{7}") {
            let number = MobileNumber::parse(&format!("06{rest}")).unwrap();
            prop_assert_eq!(number.e164(), format!("+316{rest}"));
        }
    }
}
