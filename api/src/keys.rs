//! Keyed hashes and password hashing: e-mail lookup keys, set-password link secrets, SMS code
//! hashes (HMAC-SHA-256), and argon2id password verifiers.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use domain::ids::{PasswordTokenId, SignInId, TenantId, UserId};
use domain::values::{
    CodeHash, DomainName, EmailAddress, EmailKey, MAX_PASSWORD_BYTES, MAX_PASSWORD_CHARS,
};

type HmacSha256 = Hmac<Sha256>;

/// A domain-separated HMAC-SHA-256 key, keyed once at start-up.
#[derive(Clone)]
struct KeyedHash {
    keyed: HmacSha256,
}

/// A key HMAC cannot use.
#[derive(Debug, thiserror::Error)]
#[error("the key cannot be used for HMAC-SHA-256")]
pub struct InvalidKey;

impl KeyedHash {
    fn new(key: &SecretString, purpose: &[u8]) -> Result<Self, InvalidKey> {
        let mut keyed =
            HmacSha256::new_from_slice(key.expose_secret().as_bytes()).map_err(|_| InvalidKey)?;
        keyed.update(purpose);
        keyed.update(&[0]);
        Ok(Self { keyed })
    }

    fn mac_over(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.mac_over(parts).finalize().into_bytes().into()
    }

    fn verify(&self, parts: &[&[u8]], expected_hex: &str) -> bool {
        hex::decode(expected_hex)
            .is_ok_and(|expected| self.mac_over(parts).verify_slice(&expected).is_ok())
    }
}

/// Computes the platform-wide lookup key of an e-mail address.
#[derive(Clone)]
pub struct EmailLookup(KeyedHash);

impl EmailLookup {
    /// A lookup under `key`.
    ///
    /// # Errors
    /// [`InvalidKey`].
    pub fn new(key: &SecretString) -> Result<Self, InvalidKey> {
        KeyedHash::new(key, b"finteqx/email-lookup/v1").map(Self)
    }

    /// The keyed hash of the canonical address.
    pub fn key_for(&self, email: &EmailAddress) -> EmailKey {
        EmailKey::from_digest(&self.0.digest(&[email.to_string().as_bytes()]))
    }
}

/// Computes the keyed hash of a phone number, for per-number send limits without storing it.
#[derive(Clone)]
pub struct PhoneLookup(KeyedHash);

impl PhoneLookup {
    /// A lookup under `key`.
    ///
    /// # Errors
    /// [`InvalidKey`].
    pub fn new(key: &SecretString) -> Result<Self, InvalidKey> {
        KeyedHash::new(key, b"finteqx/phone-lookup/v1").map(Self)
    }

    /// The keyed hash (hex) of the E.164 number.
    pub fn key_for(&self, number: &domain::values::MobileNumber) -> String {
        hex::encode(self.0.digest(&[number.e164().as_bytes()]))
    }
}

/// Issues and checks the secret of set-password links. The secret is derived from the token id,
/// so it is never stored: the e-mail worker derives it again (ADR-0008).
#[derive(Clone)]
pub struct PasswordTokens(KeyedHash);

impl PasswordTokens {
    /// Tokens under `key`.
    ///
    /// # Errors
    /// [`InvalidKey`].
    pub fn new(key: &SecretString) -> Result<Self, InvalidKey> {
        KeyedHash::new(key, b"finteqx/set-password-token/v1").map(Self)
    }

    /// The secret to put in the link: `{user id}.{token id}.{mac}`.
    pub fn secret_for(&self, user_id: UserId, token_id: PasswordTokenId) -> String {
        let user = user_id.as_uuid().simple().to_string();
        let token = token_id.as_uuid().simple().to_string();
        let mac = hex::encode(self.0.digest(&[user.as_bytes(), token.as_bytes()]));
        format!("{user}.{token}.{mac}")
    }

    /// The user and token inside a presented secret, if the secret is authentic.
    pub fn verify(&self, secret: &str) -> Option<(UserId, PasswordTokenId)> {
        let mut parts = secret.splitn(3, '.');
        let (user, token, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let user_uuid = Uuid::try_parse(user)
            .ok()
            .filter(|id| id.simple().to_string() == user)?;
        let token_uuid = Uuid::try_parse(token)
            .ok()
            .filter(|id| id.simple().to_string() == token)?;
        self.0
            .verify(&[user.as_bytes(), token.as_bytes()], mac)
            .then(|| {
                (
                    UserId::from_uuid(user_uuid),
                    PasswordTokenId::from_uuid(token_uuid),
                )
            })
    }
}

/// Derives the value a tenant publishes in a DNS TXT record to prove that it owns a domain
/// (ADR-0025): one per tenant and domain, so another tenant cannot reuse a published record, and
/// derived again whenever needed, so it is never stored.
#[derive(Clone)]
pub struct DomainChallenges(KeyedHash);

impl DomainChallenges {
    /// The prefix of every challenge value, so the record says whose it is.
    pub const PREFIX: &'static str = "finteqx-domain-verification=";

    /// Challenges under `key`.
    ///
    /// # Errors
    /// [`InvalidKey`].
    pub fn new(key: &SecretString) -> Result<Self, InvalidKey> {
        KeyedHash::new(key, b"finteqx/domain-challenge/v1").map(Self)
    }

    /// The TXT value `tenant_id` must publish for `domain`: 128 bits of the MAC, in hex.
    pub fn value_for(&self, tenant_id: TenantId, domain: &DomainName) -> String {
        let tenant = tenant_id.as_uuid().simple().to_string();
        let digest = self
            .0
            .digest(&[tenant.as_bytes(), domain.as_str().as_bytes()]);
        format!("{}{}", Self::PREFIX, hex::encode(&digest[..16]))
    }
}

/// Authenticates the attempt cookie between the password and the code: `{attempt id}.{mac}`,
/// so only an attempt this service started is accepted from a browser.
#[derive(Clone)]
pub struct AttemptCookies(KeyedHash);

impl AttemptCookies {
    /// Cookies under `key`.
    ///
    /// # Errors
    /// [`InvalidKey`].
    pub fn new(key: &SecretString) -> Result<Self, InvalidKey> {
        KeyedHash::new(key, b"finteqx/sign-in-attempt-cookie/v1").map(Self)
    }

    /// The cookie value of an attempt.
    pub fn value_for(&self, sign_in_id: SignInId) -> String {
        let id = sign_in_id.as_uuid().simple().to_string();
        let mac = hex::encode(self.0.digest(&[id.as_bytes()]));
        format!("{id}.{mac}")
    }

    /// The attempt of an authentic cookie value.
    pub fn verify(&self, value: &str) -> Option<SignInId> {
        let (id, mac) = value.split_once('.')?;
        let uuid = Uuid::try_parse(id)
            .ok()
            .filter(|uuid| uuid.simple().to_string() == id)?;
        self.0
            .verify(&[id.as_bytes()], mac)
            .then(|| SignInId::from_uuid(uuid))
    }
}

/// Hashes SMS codes, bound to their sign-in attempt.
#[derive(Clone)]
pub struct CodeHasher(KeyedHash);

impl CodeHasher {
    /// Hashes under `key`.
    ///
    /// # Errors
    /// [`InvalidKey`].
    pub fn new(key: &SecretString) -> Result<Self, InvalidKey> {
        KeyedHash::new(key, b"finteqx/sms-code/v1").map(Self)
    }

    /// The keyed hash of `code` within `sign_in_id`.
    pub fn hash(&self, sign_in_id: SignInId, code: &str) -> CodeHash {
        CodeHash::from_digest(
            &self
                .0
                .digest(&[sign_in_id.as_uuid().as_bytes(), code.as_bytes()]),
        )
    }
}

/// Password hashing with argon2id (OWASP parameters are the crate defaults: m=19 MiB, t=2, p=1).
#[derive(Clone, Default)]
pub struct PasswordHashing;

/// Hashing failed (should not happen with the default parameters).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashingError(String);

/// Whether a password is within the maximum length: its bytes first ([`MAX_PASSWORD_BYTES`],
/// free to check), then its characters ([`MAX_PASSWORD_CHARS`]). No password longer than that
/// can be set, so a longer one never matches and is not worth argon2's time.
pub fn within_max_password_length(password: &SecretString) -> bool {
    let password = password.expose_secret();
    password.len() <= MAX_PASSWORD_BYTES && password.chars().count() <= MAX_PASSWORD_CHARS
}

impl PasswordHashing {
    /// The PHC string of a new password. CPU-heavy: call from `spawn_blocking`.
    ///
    /// # Errors
    /// [`HashingError`] for a password over the maximum length (not hashed), or if argon2
    /// refuses its parameters.
    pub fn hash(&self, password: &SecretString) -> Result<String, HashingError> {
        if !within_max_password_length(password) {
            return Err(HashingError(
                "the password is over the maximum length".to_owned(),
            ));
        }
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| HashingError(e.to_string()))
    }

    /// Whether `password` matches the PHC string. CPU-heavy: call from `spawn_blocking`. A
    /// password over the maximum length is refused before argon2, as a wrong one: nobody can
    /// have set it, and hashing 60 KB would cost many times a normal check.
    pub fn verify(&self, password: &SecretString, phc: &str) -> bool {
        if !within_max_password_length(password) {
            return false;
        }
        PasswordHash::new(phc).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &hash)
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn attempt_cookies_verify_their_own_values_only() {
        let key = SecretString::from("a test key for attempt cookies".to_owned());
        let cookies = AttemptCookies::new(&key).unwrap();
        let id = SignInId::from_uuid(Uuid::from_u128(42));
        let value = cookies.value_for(id);
        assert_eq!(cookies.verify(&value), Some(id));
        let other = SignInId::from_uuid(Uuid::from_u128(43));
        let (_, mac) = value.split_once('.').unwrap();
        let forged = format!("{}.{mac}", other.as_uuid().simple());
        assert_eq!(
            cookies.verify(&forged),
            None,
            "a MAC does not move to another attempt"
        );
        assert_eq!(
            cookies.verify(&id.to_string()),
            None,
            "a bare id is refused"
        );
        let elsewhere = AttemptCookies::new(&SecretString::from("another key".to_owned())).unwrap();
        assert_eq!(elsewhere.verify(&value), None);
    }

    use super::*;

    fn key(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    impl EmailLookup {
        fn test(k: &str) -> Self {
            Self::new(&key(k)).unwrap()
        }
    }

    #[test]
    fn email_lookup_is_keyed_and_case_insensitive_through_normalisation() {
        let lookup = EmailLookup::test("k1");
        let a = lookup.key_for(&EmailAddress::parse("Anne@Contoso.com").unwrap());
        let b = lookup.key_for(&EmailAddress::parse("anne@contoso.com").unwrap());
        let other_key =
            EmailLookup::test("k2").key_for(&EmailAddress::parse("anne@contoso.com").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other_key);
    }

    #[test]
    fn password_token_secrets_verify_only_untampered() {
        let tokens = PasswordTokens::new(&key("k")).unwrap();
        let user = UserId::from_uuid(Uuid::from_u128(7));
        let id = PasswordTokenId::from_uuid(Uuid::from_u128(77));
        let secret = tokens.secret_for(user, id);
        assert_eq!(tokens.verify(&secret), Some((user, id)));
        let mut tampered = secret.clone();
        tampered.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
        assert_eq!(tokens.verify(&tampered), None);
        assert_eq!(
            PasswordTokens::new(&key("other")).unwrap().verify(&secret),
            None
        );
        assert_eq!(tokens.verify("garbage"), None);
    }

    #[test]
    fn code_hashes_bind_the_attempt() {
        let hasher = CodeHasher::new(&key("k")).unwrap();
        let a = SignInId::from_uuid(Uuid::from_u128(1));
        let b = SignInId::from_uuid(Uuid::from_u128(2));
        assert!(hasher.hash(a, "123456").matches(&hasher.hash(a, "123456")));
        assert!(!hasher.hash(a, "123456").matches(&hasher.hash(b, "123456")));
        assert!(!hasher.hash(a, "123456").matches(&hasher.hash(a, "123457")));
    }

    #[test]
    fn domain_challenges_are_stable_keyed_and_differ_per_tenant_and_domain() {
        let challenges = DomainChallenges::new(&key("k")).unwrap();
        let tenant = TenantId::from_uuid(Uuid::from_u128(1));
        let other = TenantId::from_uuid(Uuid::from_u128(2));
        let contoso = DomainName::parse("contoso.com").unwrap();
        let fabrikam = DomainName::parse("fabrikam.com").unwrap();
        let value = challenges.value_for(tenant, &contoso);
        assert!(value.starts_with(DomainChallenges::PREFIX), "{value}");
        assert_eq!(value.len(), DomainChallenges::PREFIX.len() + 32);
        assert_eq!(value, challenges.value_for(tenant, &contoso));
        assert_ne!(value, challenges.value_for(other, &contoso));
        assert_ne!(value, challenges.value_for(tenant, &fabrikam));
        let elsewhere = DomainChallenges::new(&key("k2")).unwrap();
        assert_ne!(value, elsewhere.value_for(tenant, &contoso));
    }

    #[test]
    fn argon2id_verifies_the_right_password_only() {
        let hashing = PasswordHashing;
        let phc = hashing.hash(&key("correct horse battery staple")).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(hashing.verify(&key("correct horse battery staple"), &phc));
        assert!(!hashing.verify(&key("Correct horse battery staple"), &phc));
    }

    #[test]
    fn a_password_over_the_maximum_length_is_neither_hashed_nor_verified() {
        let cases = [
            ("a".repeat(256), true, "256 characters"),
            ("a".repeat(257), false, "257 characters"),
            ("😀".repeat(256), true, "256 characters of four bytes"),
            ("a".repeat(60_000), false, "60 KB"),
        ];
        for (password, within, why) in cases {
            assert_eq!(within_max_password_length(&key(&password)), within, "{why}");
        }
        let hashing = PasswordHashing;
        let long = "a".repeat(300);
        assert!(hashing.hash(&key(&long)).is_err(), "not hashed");
        // A verifier of an over-long password, as no one can set one: argon2 would match it.
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(long.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert!(!hashing.verify(&key(&long), &phc), "refused before argon2");
    }
}
