//! Renders a queued message kind into a subject, a plain-text body and an HTML body, in the
//! recipient's language, from templates embedded in the binary.

use chrono::{DateTime, Datelike, Utc};
use minijinja::{AutoEscape, Environment, Value, context};

use domain::values::Locale;
use projections::notification_queue::MessageKind;

/// A rendered e-mail: what the sender puts on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// The subject line, a single line without surrounding whitespace.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, with every value escaped.
    pub html: String,
}

/// What the templates may show: the recipient's display name and nothing else personal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailContext {
    /// How the recipient is addressed ("Beste …").
    pub display_name: String,
    /// The recipient's organisation (the tenant's display name).
    pub tenant_name: String,
    /// The full set-password link (`{public_base_url}/password?token={secret}`), for the kinds
    /// that carry one.
    pub set_password_url: Option<String>,
    /// When the set-password link stops working, for the kinds that carry one.
    pub expires_at: Option<DateTime<Utc>>,
    /// The e-mail domain that was linked to Microsoft Entra ID, for `linked`.
    pub domain: Option<String>,
}

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The kind is not delivered by e-mail (an SMS code).
    #[error("message kind {kind} is not an e-mail")]
    NotAnEmail {
        /// The stored kind name.
        kind: &'static str,
    },
    /// The kind's template needs a context value that was not given.
    #[error("message kind {kind} needs {field}")]
    MissingContext {
        /// The stored kind name.
        kind: &'static str,
        /// The missing field of [`EmailContext`].
        field: &'static str,
    },
    /// An embedded template failed to parse or render.
    #[error("template {template} failed")]
    Template {
        /// The template's name.
        template: String,
        /// The template engine's error.
        #[source]
        source: minijinja::Error,
    },
}

/// The three templates of one message in one language.
struct Templates {
    subject: &'static str,
    text: &'static str,
    html: &'static str,
}

/// Embeds the templates of `templates/<kind>/<locale>/`.
macro_rules! templates {
    ($kind:literal, $locale:literal) => {
        Templates {
            subject: include_str!(concat!(
                "templates/",
                $kind,
                "/",
                $locale,
                "/subject.txt.j2"
            )),
            text: include_str!(concat!("templates/", $kind, "/", $locale, "/body.txt.j2")),
            html: include_str!(concat!("templates/", $kind, "/", $locale, "/body.html.j2")),
        }
    };
}

/// The HTML frame every HTML body extends.
const LAYOUT_HTML: &str = include_str!("templates/layout.html.j2");

/// The embedded templates for an e-mail kind, or `None` for a kind that is not an e-mail.
fn templates_for(kind: MessageKind, locale: Locale) -> Option<Templates> {
    let templates = match (kind, locale) {
        (MessageKind::WelcomeSetPassword, Locale::Nl) => templates!("welcome_set_password", "nl"),
        (MessageKind::WelcomeSetPassword, Locale::En) => templates!("welcome_set_password", "en"),
        (MessageKind::WelcomeEntra, Locale::Nl) => templates!("welcome_entra", "nl"),
        (MessageKind::WelcomeEntra, Locale::En) => templates!("welcome_entra", "en"),
        (MessageKind::Linked, Locale::Nl) => templates!("linked", "nl"),
        (MessageKind::Linked, Locale::En) => templates!("linked", "en"),
        (MessageKind::Unlinked, Locale::Nl) => templates!("unlinked", "nl"),
        (MessageKind::Unlinked, Locale::En) => templates!("unlinked", "en"),
        (MessageKind::SetPassword, Locale::Nl) => templates!("set_password", "nl"),
        (MessageKind::SetPassword, Locale::En) => templates!("set_password", "en"),
        (MessageKind::SmsCode, _) => return None,
    };
    Some(templates)
}

/// The first context field `kind` needs that `context` lacks, if any.
const fn missing_field(kind: MessageKind, context: &EmailContext) -> Option<&'static str> {
    let carries_link = matches!(
        kind,
        MessageKind::WelcomeSetPassword | MessageKind::Unlinked | MessageKind::SetPassword
    );
    if carries_link && context.set_password_url.is_none() {
        Some("set_password_url")
    } else if carries_link && context.expires_at.is_none() {
        Some("expires_at")
    } else if matches!(kind, MessageKind::Linked) && context.domain.is_none() {
        Some("domain")
    } else {
        None
    }
}

/// Renders `kind` in `locale` for the recipient described by `context`.
///
/// The expiry is shown as its calendar date in UTC ("4 december 2026" / "4 December 2026"). For
/// Dutch recipients (UTC+1 or UTC+2) that date is never later than the local one, so the mail
/// never promises more time than the link has.
///
/// # Errors
///
/// [`RenderError::NotAnEmail`] for [`MessageKind::SmsCode`], [`RenderError::MissingContext`] when
/// the kind needs a link, an expiry or a domain that `context` lacks, and
/// [`RenderError::Template`] if an embedded template fails.
pub fn render(
    kind: MessageKind,
    locale: Locale,
    context: &EmailContext,
) -> Result<RenderedEmail, RenderError> {
    let templates = templates_for(kind, locale).ok_or(RenderError::NotAnEmail {
        kind: kind.as_str(),
    })?;
    if let Some(field) = missing_field(kind, context) {
        return Err(RenderError::MissingContext {
            kind: kind.as_str(),
            field,
        });
    }

    let mut environment = Environment::new();
    environment.set_auto_escape_callback(|name| {
        if name.ends_with(".html.j2") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    add(&mut environment, "layout.html.j2", LAYOUT_HTML)?;
    add(&mut environment, "subject.txt.j2", templates.subject)?;
    add(&mut environment, "body.txt.j2", templates.text)?;
    add(&mut environment, "body.html.j2", templates.html)?;

    let expires_on = context
        .expires_at
        .map(|expires_at| format_date(expires_at, locale));
    let values = |set_password_url: Option<Value>| {
        context! {
            lang => locale.as_str(),
            display_name => &context.display_name,
            tenant_name => &context.tenant_name,
            set_password_url => set_password_url,
            expires_on => &expires_on,
            domain => &context.domain,
        }
    };
    let text_values = values(context.set_password_url.as_deref().map(Value::from));
    // minijinja's HTML escaping also turns `/` into `&#x2f;`; a link stays readable (and
    // copyable from the source) when only the characters HTML requires are escaped.
    let html_values = values(
        context
            .set_password_url
            .as_deref()
            .map(|url| Value::from_safe_string(escape_attribute(url))),
    );

    let subject = one_line(&run(&environment, "subject.txt.j2", &text_values)?);
    let text = run(&environment, "body.txt.j2", &text_values)?;
    let html = run(&environment, "body.html.j2", &html_values)?;
    Ok(RenderedEmail {
        subject,
        text,
        html,
    })
}

fn add(
    environment: &mut Environment<'static>,
    name: &'static str,
    source: &'static str,
) -> Result<(), RenderError> {
    environment
        .add_template(name, source)
        .map_err(|source| RenderError::Template {
            template: name.to_owned(),
            source,
        })
}

fn run(environment: &Environment<'_>, name: &str, values: &Value) -> Result<String, RenderError> {
    environment
        .get_template(name)
        .and_then(|template| template.render(values))
        .map_err(|source| RenderError::Template {
            template: name.to_owned(),
            source,
        })
}

/// Collapses a rendered subject into one line (a header never carries a line break).
fn one_line(subject: &str) -> String {
    subject.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes the characters that are special inside an HTML attribute or text node.
fn escape_attribute(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}

const MONTHS_NL: [&str; 12] = [
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
];

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Formats the UTC calendar date of `at` the way the locale writes dates in running text.
fn format_date(at: DateTime<Utc>, locale: Locale) -> String {
    let months = match locale {
        Locale::Nl => &MONTHS_NL,
        Locale::En => &MONTHS_EN,
    };
    let month = months
        .get(at.month0() as usize)
        .copied()
        .unwrap_or_default();
    format!("{} {month} {}", at.day(), at.year())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const EMAIL_KINDS: [MessageKind; 5] = [
        MessageKind::WelcomeSetPassword,
        MessageKind::WelcomeEntra,
        MessageKind::Linked,
        MessageKind::Unlinked,
        MessageKind::SetPassword,
    ];
    const LOCALES: [Locale; 2] = [Locale::Nl, Locale::En];
    const URL: &str = "https://access.finteqx.example/password?token=abc.DEF-123_xyz";

    fn context() -> EmailContext {
        EmailContext {
            display_name: "Anne de Vries".to_owned(),
            tenant_name: "Contoso BV".to_owned(),
            set_password_url: Some(URL.to_owned()),
            expires_at: Some(Utc.with_ymd_and_hms(2026, 12, 4, 15, 30, 0).unwrap()),
            domain: Some("contoso.nl".to_owned()),
        }
    }

    fn has_link(kind: MessageKind) -> bool {
        matches!(
            kind,
            MessageKind::WelcomeSetPassword | MessageKind::Unlinked | MessageKind::SetPassword
        )
    }

    #[test]
    fn every_email_kind_renders_in_dutch_and_english() {
        for kind in EMAIL_KINDS {
            for locale in LOCALES {
                let email = render(kind, locale, &context()).unwrap();
                assert!(!email.subject.is_empty(), "{kind:?} {locale:?}");
                assert!(!email.subject.contains('\n'), "{kind:?} {locale:?}");
                assert!(email.text.contains("Anne de Vries"), "{kind:?} {locale:?}");
                assert!(email.html.contains("Anne de Vries"), "{kind:?} {locale:?}");
                assert!(
                    email.text.contains("Akkermans FinteQX"),
                    "{kind:?} {locale:?}"
                );
                assert!(
                    email.html.contains("Akkermans FinteQX"),
                    "{kind:?} {locale:?}"
                );
                assert!(
                    email
                        .html
                        .contains(&format!("<html lang=\"{}\">", locale.as_str())),
                    "{kind:?} {locale:?}"
                );
                assert!(!email.text.contains("{{"), "{kind:?} {locale:?}");
            }
        }
    }

    #[test]
    fn dutch_and_english_subjects_differ() {
        for kind in EMAIL_KINDS {
            let dutch = render(kind, Locale::Nl, &context()).unwrap();
            let english = render(kind, Locale::En, &context()).unwrap();
            assert_ne!(dutch.subject, english.subject, "{kind:?}");
            assert_ne!(dutch.text, english.text, "{kind:?}");
        }
    }

    #[test]
    fn link_mails_show_the_set_password_url_and_expiry_date_in_both_parts() {
        for kind in EMAIL_KINDS.into_iter().filter(|kind| has_link(*kind)) {
            for (locale, date) in [
                (Locale::Nl, "4 december 2026"),
                (Locale::En, "4 December 2026"),
            ] {
                let email = render(kind, locale, &context()).unwrap();
                assert!(email.text.contains(URL), "{kind:?} {locale:?}");
                assert!(
                    email.html.contains(&format!("href=\"{URL}\"")),
                    "{kind:?} {locale:?}"
                );
                assert!(email.text.contains(date), "{kind:?} {locale:?}");
                assert!(email.html.contains(date), "{kind:?} {locale:?}");
            }
        }
    }

    #[test]
    fn entra_mails_name_the_sign_in_button() {
        for kind in [MessageKind::WelcomeEntra, MessageKind::Linked] {
            for locale in LOCALES {
                let email = render(kind, locale, &context()).unwrap();
                assert!(
                    email.text.contains("Inloggen met Microsoft Entra ID"),
                    "{kind:?} {locale:?}"
                );
                assert!(
                    email.html.contains("Inloggen met Microsoft Entra ID"),
                    "{kind:?} {locale:?}"
                );
            }
        }
    }

    #[test]
    fn linked_and_unlinked_mails_say_the_current_session_stays_active() {
        for (locale, phrase) in [(Locale::Nl, "actief"), (Locale::En, "stays active")] {
            for kind in [MessageKind::Linked, MessageKind::Unlinked] {
                let email = render(kind, locale, &context()).unwrap();
                assert!(email.text.contains(phrase), "{kind:?} {locale:?}");
                assert!(email.html.contains(phrase), "{kind:?} {locale:?}");
            }
        }
    }

    #[test]
    fn linked_mail_names_the_domain() {
        for locale in LOCALES {
            let email = render(MessageKind::Linked, locale, &context()).unwrap();
            assert!(email.text.contains("contoso.nl"));
            assert!(email.html.contains("contoso.nl"));
        }
    }

    #[test]
    fn html_escapes_the_display_name_and_text_keeps_it_verbatim() {
        let context = EmailContext {
            display_name: "<script>alert(\"x\")</script> & co".to_owned(),
            tenant_name: "R&D <BV>".to_owned(),
            ..context()
        };
        for kind in EMAIL_KINDS {
            for locale in LOCALES {
                let email = render(kind, locale, &context).unwrap();
                assert!(!email.html.contains("<script>"), "{kind:?} {locale:?}");
                assert!(email.html.contains("&lt;script&gt;"), "{kind:?} {locale:?}");
                assert!(!email.html.contains("R&D"), "{kind:?} {locale:?}");
                assert!(email.text.contains("<script>"), "{kind:?} {locale:?}");
            }
        }
    }

    #[test]
    fn html_escapes_quotes_in_the_link() {
        let context = EmailContext {
            set_password_url: Some("https://x.example/password?token=a\"><b>&c".to_owned()),
            ..context()
        };
        let email = render(MessageKind::SetPassword, Locale::En, &context).unwrap();
        assert!(
            email
                .html
                .contains("href=\"https://x.example/password?token=a&quot;&gt;&lt;b&gt;&amp;c\"")
        );
        assert!(!email.html.contains("<b>"));
    }

    #[test]
    fn sms_code_is_refused_as_not_an_email() {
        let error = render(MessageKind::SmsCode, Locale::Nl, &context()).unwrap_err();
        assert!(matches!(
            error,
            RenderError::NotAnEmail { kind: "sms_code" }
        ));
    }

    #[test]
    fn link_mail_without_a_link_is_refused() {
        let context = EmailContext {
            set_password_url: None,
            ..context()
        };
        let error = render(MessageKind::Unlinked, Locale::En, &context).unwrap_err();
        assert!(matches!(
            error,
            RenderError::MissingContext {
                kind: "unlinked",
                field: "set_password_url"
            }
        ));
    }

    #[test]
    fn linked_mail_without_a_domain_is_refused() {
        let context = EmailContext {
            domain: None,
            ..context()
        };
        let error = render(MessageKind::Linked, Locale::Nl, &context).unwrap_err();
        assert!(matches!(
            error,
            RenderError::MissingContext {
                field: "domain",
                ..
            }
        ));
    }

    #[test]
    fn dates_use_the_locales_month_names() {
        let at = Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(format_date(at, Locale::Nl), "1 maart 2027");
        assert_eq!(format_date(at, Locale::En), "1 March 2027");
    }
}
