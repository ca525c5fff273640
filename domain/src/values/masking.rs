//! Masked forms of personal values, for readers who may see that a value exists but not what
//! it is: support staff (spec: support sees personal data masked) and logs. One module, so
//! that every masked view of a phone number, address or name looks the same.

/// A phone number in E.164 form with all but the country code prefix and the last two digits
/// hidden: `+31612345678` → `+31*******78`.
pub(crate) fn phone(e164: &str) -> String {
    let chars: Vec<char> = e164.chars().collect();
    let keep_head = 3.min(chars.len());
    let keep_tail = 2.min(chars.len().saturating_sub(keep_head));
    let hidden = chars.len() - keep_head - keep_tail;
    let head: String = chars[..keep_head].iter().collect();
    let tail: String = chars[chars.len() - keep_tail..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(hidden))
}

/// An e-mail address with the first character of its local part and of its domain's first
/// label kept, and the top-level label: `anne.devries@eu.contoso.com` → `a***@e***.com`. The
/// stars are a fixed three, so the mask does not tell the length.
pub(crate) fn email(local: &str, domain: &str) -> String {
    let first = |text: &str| text.chars().next().map(String::from).unwrap_or_default();
    let mut labels = domain.split('.');
    let head = labels.next().unwrap_or_default();
    match labels.next_back() {
        Some(top) => format!("{}***@{}***.{top}", first(local), first(head)),
        None => format!("{}***@{}***", first(local), first(head)),
    }
}

/// A name with only the first letter of each word shown: `Anne de Vries` → `A*** d* V****`.
pub(crate) fn name(name: &str) -> String {
    name.split(' ')
        .map(|word| {
            word.chars()
                .enumerate()
                .map(|(index, c)| if index == 0 { c } else { '*' })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_phone_number_keeps_its_country_prefix_and_last_two_digits() {
        assert_eq!(phone("+31612345678"), "+31*******78");
        assert_eq!(phone("+3"), "+3", "too short to hide anything");
    }

    #[test]
    fn an_address_keeps_two_first_letters_and_the_top_level_domain() {
        let cases = [
            ("anne", "contoso.com", "a***@c***.com"),
            ("anne.devries+mfa", "eu.contoso.com", "a***@e***.com"),
            ("j", "xn--bcher-kva.de", "j***@x***.de"),
            ("jan", "contoso", "j***@c***"),
        ];
        for (local, domain, expected) in cases {
            assert_eq!(email(local, domain), expected, "{local}@{domain}");
        }
    }

    #[test]
    fn a_name_keeps_the_first_letter_of_each_word() {
        let cases = [
            ("Anne de Vries", "A*** d* V****"),
            ("Eva", "E**"),
            ("Jean-Luc Ørsted", "J******* Ø*****"),
            ("A B", "A B"),
        ];
        for (input, expected) in cases {
            assert_eq!(name(input), expected, "{input}");
        }
    }

    proptest! {
        #[test]
        fn a_masked_name_shows_no_letter_but_each_words_first(input in "\\PC{1,60}") {
            let masked = name(&input);
            prop_assert_eq!(masked.chars().count(), input.chars().count());
            for (word, shown) in input.split(' ').zip(masked.split(' ')) {
                prop_assert_eq!(word.chars().next(), shown.chars().next());
                prop_assert!(shown.chars().skip(1).all(|c| c == '*'));
            }
        }
    }
}
