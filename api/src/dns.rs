//! The DNS adapter of domain proof (ADR-0025): reads the TXT records at a name with a real
//! resolver (hickory), either the machine's own (`/etc/resolv.conf`) or a configured nameserver.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};

use crate::configuration::DnsSettings;

/// The label under the domain where the challenge is published: an underscore label, as
/// ACME's `_acme-challenge`, so it never clashes with a host name or the apex's SPF records.
pub const CHALLENGE_LABEL: &str = "_finteqx-challenge";

/// The DNS lookup failed for a reason other than "no such record": the check can be repeated.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// No answer (timeout, refused, unreachable nameserver).
    #[error("the DNS lookup failed")]
    Lookup(#[source] ResolveError),
    /// No nameserver is configured and the machine's resolver configuration could not be read.
    #[error("no DNS resolver is configured (dns.nameserver, APP_DNS__NAMESERVER)")]
    NoResolver,
}

/// Looks up TXT records.
#[derive(Debug, Clone)]
pub struct TxtResolver {
    /// `None` when the machine's configuration could not be read at start-up.
    config: Option<ResolverConfig>,
    options: ResolverOpts,
}

impl TxtResolver {
    /// A resolver as `settings` say: the system's, or the configured nameserver.
    ///
    /// # Errors
    /// A configured nameserver that is not `ip:port`. A machine without a readable
    /// `/etc/resolv.conf` is not an error here: the service starts, and each check answers
    /// [`DnsError::NoResolver`] (a domain proof is not worth refusing every sign-in for).
    pub fn new(settings: &DnsSettings) -> anyhow::Result<Self> {
        let mut options = ResolverOpts::default();
        options.timeout = Duration::from_millis(settings.timeout_ms);
        options.attempts = 2;
        let config = if settings.nameserver.trim().is_empty() {
            match hickory_resolver::system_conf::read_system_conf() {
                Ok((config, system_options)) => {
                    options.ndots = system_options.ndots;
                    Some(config)
                }
                Err(error) => {
                    tracing::warn!(error.message = %error, "no system DNS configuration; domain proofs by DNS will fail until dns.nameserver is set");
                    None
                }
            }
        } else {
            Some(Self::nameserver_config(&settings.nameserver)?)
        };
        Ok(Self { config, options })
    }

    /// A resolver that asks only the nameserver at `address` (`ip:port`).
    ///
    /// # Errors
    /// An address that is not `ip:port`.
    pub fn with_nameserver(address: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        options.attempts = 1;
        Ok(Self {
            config: Some(Self::nameserver_config(address)?),
            options,
        })
    }

    fn nameserver_config(address: &str) -> anyhow::Result<ResolverConfig> {
        let address: SocketAddr = address
            .trim()
            .parse()
            .context("dns.nameserver (APP_DNS__NAMESERVER) must be ip:port, e.g. 127.0.0.1:53")?;
        Ok(ResolverConfig::from_parts(
            None,
            vec![],
            NameServerConfigGroup::from_ips_clear(&[address.ip()], address.port(), true),
        ))
    }

    /// Every TXT value at `name` (character strings joined, as RFC 7208 reads them); empty when
    /// the name or the record does not exist.
    ///
    /// # Errors
    /// [`DnsError`] when no answer came.
    #[tracing::instrument(skip_all, fields(dns.name = %name))]
    pub async fn txt_values(&self, name: &str) -> Result<Vec<String>, DnsError> {
        // A fresh resolver per check: an administrator who checks before publishing must not
        // meet a cached negative answer when checking again a minute later.
        let config = self.config.clone().ok_or(DnsError::NoResolver)?;
        let resolver: TokioResolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(self.options.clone())
                .build();
        // A trailing dot: the name is absolute, no search domain is tried.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match resolver.txt_lookup(fqdn).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|txt| {
                    txt.txt_data()
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>()
                })
                .collect()),
            Err(error) if error.is_no_records_found() || error.is_nx_domain() => Ok(vec![]),
            Err(error) => Err(DnsError::Lookup(error)),
        }
    }
}

/// The name the challenge of `domain` is published at.
pub fn challenge_name(domain: &domain::values::DomainName) -> String {
    format!("{CHALLENGE_LABEL}.{}", domain.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_nameserver_must_be_ip_and_port() {
        let settings = |nameserver: &str| DnsSettings {
            nameserver: nameserver.to_owned(),
            timeout_ms: 100,
        };
        assert!(TxtResolver::new(&settings("127.0.0.1:5353")).is_ok());
        assert!(TxtResolver::new(&settings("[::1]:53")).is_ok());
        for bad in ["127.0.0.1", "dns.example:53", "localhost"] {
            assert!(TxtResolver::new(&settings(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_challenge_lives_under_an_underscore_label() {
        let domain = domain::values::DomainName::parse("Contoso.COM").unwrap();
        assert_eq!(challenge_name(&domain), "_finteqx-challenge.contoso.com");
    }
}
