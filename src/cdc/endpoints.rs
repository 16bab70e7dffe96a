//! Where rest-hook notifications may go: a Subscription must not turn fhirlake into a proxy
//! to loopback services, the private network or a cloud metadata address.
//!
//! An endpoint under a prefix of `--subscription-endpoints` ([`Prefix`]) may have any
//! address. Any other endpoint may only reach public addresses ([`refused`] says which are
//! not): that is checked when a Subscription is written ([`check`]), and again at every
//! delivery, since a name may resolve elsewhere later (DNS rebinding): a literal address
//! before each POST ([`Clients::client`]), a name's addresses as the connection is made
//! ([`PublicOnly`], the resolver of the client for such endpoints).
//!
//! A prefix matches by scheme, host, port and whole path segments. On write the name is
//! resolved once (a name that does not resolve is accepted: its deliveries fail until it
//! does). The client of unlisted endpoints uses no proxy from the environment, and no
//! delivery follows a redirect (a 3xx is a failed notification).

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The longest a write waits for an endpoint's name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why fhirlake does not connect to `ip` (to POST a notification, or GET a backend client's
/// JWKS) unless an allowed prefix names the endpoint (a phrase
/// that follows "ADDRESS is"); `None` for a public address. An IPv6 address that embeds an
/// IPv4 one (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged
/// as that IPv4 address.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => refused_v4(ip),
        IpAddr::V6(ip) => refused_v6(ip),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "an unspecified address (0.0.0.0/8)",
        (127, ..) => "a loopback address",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "a private address (RFC 1918)",
        (169, 254, _) => "a link-local address (cloud metadata lives there)",
        (100, 64..=127, _) => "a shared address (CGNAT, 100.64.0.0/10)",
        (192, 0, 0) => "an IETF protocol address (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address (198.18.0.0/15)",
        (224..=239, ..) => "a multicast address",
        (240..=255, ..) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match s {
        [0, 0, 0, 0, 0, 0xffff, high, low] | [0x64, 0xff9b, 0, 0, 0, 0, high, low] => {
            return refused_v4(embedded(high, low));
        }
        [0x2002, high, low, ..] => return refused_v4(embedded(high, low)),
        _ => {}
    }
    Some(match s[0] {
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        0 if s[..6] == [0; 6] => "an IPv4-compatible address (deprecated)",
        0xfc00..=0xfdff => "a unique local address (fc00::/7)",
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address (deprecated)",
        0xff00..=0xffff => "a multicast address",
        0x2001 if s[1] == 0xdb8 => "a documentation address",
        _ => return None,
    })
}

/// An allowed endpoint prefix: endpoints with its scheme, host and port (the scheme's
/// default when not written), and a path under its path, may have any address. The path is
/// matched by whole segments: `/hooks` allows `/hooks` and `/hooks/a`, not `/hooksa`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(Url);

impl Prefix {
    /// Reads a prefix: an http(s) URL with a host and no user, query or fragment.
    pub fn parse(text: &str) -> Result<Prefix, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(format!("'{text}' is not an http(s) URL with a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("'{text}': a prefix names no user"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("'{text}': a prefix has no query or fragment"));
        }
        Ok(Prefix(url))
    }

    /// Whether `endpoint` is under this prefix; both are parsed URLs, so the host compared is
    /// the one a connection would go to (`http://127.0.0.1:9000.evil/` is not under
    /// `http://127.0.0.1:9000/`, and `/hooks/../admin` is `/admin`).
    pub fn matches(&self, endpoint: &Url) -> bool {
        let prefix = &self.0;
        let path = prefix.path();
        endpoint.scheme() == prefix.scheme()
            && endpoint.host() == prefix.host()
            && endpoint.port_or_known_default() == prefix.port_or_known_default()
            && endpoint
                .path()
                .strip_prefix(path)
                .is_some_and(|rest| path.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
    }
}

/// How fhirlake may reach an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An allowed prefix names it: any address.
    Listed,
    /// Public addresses only: a literal address is public; a name's addresses are
    /// filtered as it resolves ([`PublicOnly`]).
    Public,
}

/// Judges `endpoint` without resolving its name: listed, public, or why it is refused.
pub fn route(allowed: &[Prefix], endpoint: &Url) -> Result<Route, String> {
    if allowed.iter().any(|prefix| prefix.matches(endpoint)) {
        return Ok(Route::Listed);
    }
    let Some(ip) = literal(endpoint) else {
        return Ok(Route::Public);
    };
    match refused(ip) {
        Some(reason) => Err(refusal(endpoint, ip, reason)),
        None => Ok(Route::Public),
    }
}

/// The address of `url`'s host when it is written as one (the URL parser has normalized it:
/// `http://2130706433/` is `127.0.0.1`).
fn literal(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn refusal(endpoint: &Url, ip: IpAddr, reason: &str) -> String {
    format!(
        "fhirlake does not connect to {endpoint}: {ip} is {reason} (list the endpoint in \
         --subscription-endpoints to allow it)"
    )
}

/// Checks `endpoint` as a Subscription is written: listed, a public literal address, or a
/// name that resolves to public addresses only. A name that does not resolve (in
/// [`RESOLVE_TIMEOUT`]) is accepted: its notifications fail, and the Subscription goes to
/// `error`, until it resolves to a public address.
pub async fn check(allowed: &[Prefix], endpoint: &Url) -> Result<(), String> {
    if route(allowed, endpoint)? == Route::Listed || literal(endpoint).is_some() {
        return Ok(());
    }
    let (Some(name), Some(port)) = (endpoint.host_str(), endpoint.port_or_known_default()) else {
        return Ok(());
    };
    let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)));
    let Ok(Ok(addresses)) = resolved.await else {
        return Ok(());
    };
    for address in addresses {
        if let Some(reason) = refused(address.ip()) {
            return Err(refusal(endpoint, address.ip(), reason));
        }
    }
    Ok(())
}

/// A DNS resolver that gives only the public addresses of a name, and an error (saying why)
/// when it has none: a connection it serves cannot reach a refused address, whatever the
/// name resolved to when the Subscription was written.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public = public_only(&name, resolved.collect())?;
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The public ones of `addresses` (those `name` resolved to); an error naming a refused one
/// when none is public.
fn public_only(name: &str, addresses: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
    let mut first_refused = None;
    let public: Vec<SocketAddr> = addresses
        .into_iter()
        .filter(|address| match refused(address.ip()) {
            Some(reason) => {
                first_refused.get_or_insert((address.ip(), reason));
                false
            }
            None => true,
        })
        .collect();
    match first_refused {
        _ if !public.is_empty() => Ok(public),
        Some((ip, reason)) => Err(format!(
            "{name} resolves to no public address ({ip} is {reason}); list the endpoint in \
             --subscription-endpoints to allow it"
        )),
        None => Err(format!("{name} resolves to no address")),
    }
}

/// The HTTP clients of rest-hook deliveries, and the allowed prefixes that pick one. Neither
/// follows redirects (a 3xx answer is a failed notification), since a redirect could lead
/// anywhere. The client of unlisted endpoints uses no proxy from the environment: a proxy
/// would connect to the endpoint's addresses without [`PublicOnly`] judging them.
pub struct Clients {
    allowed: Vec<Prefix>,
    listed: reqwest::Client,
    public: reqwest::Client,
}

impl Clients {
    pub fn new(allowed: Vec<Prefix>, timeout: Duration) -> reqwest::Result<Clients> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .redirect(Policy::none())
        };
        Ok(Clients {
            allowed,
            listed: builder().build()?,
            public: builder()
                .no_proxy()
                .dns_resolver(Arc::new(PublicOnly))
                .build()?,
        })
    }

    /// The client to POST to `endpoint` with, or why fhirlake may not ([`route`]): judged
    /// before each POST, since the allowed prefixes may have changed since the Subscription
    /// was written.
    pub fn client(&self, endpoint: &Url) -> Result<&reqwest::Client, String> {
        Ok(match route(&self.allowed, endpoint)? {
            Route::Listed => &self.listed,
            Route::Public => &self.public,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn only_public_addresses_pass() {
        for refused_ip in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.2.7",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::7f00:1",
        ] {
            assert!(refused(ip(refused_ip)).is_some(), "{refused_ip}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::",
        ] {
            assert_eq!(refused(ip(public)), None, "{public}");
        }
        assert_eq!(
            refused(ip("169.254.169.254")),
            Some("a link-local address (cloud metadata lives there)")
        );
    }

    proptest! {
        #[test]
        fn v6_forms_of_a_v4_address_are_judged_as_it(bits: u32) {
            let v4 = Ipv4Addr::from(bits);
            let judged = refused(IpAddr::V4(v4));
            prop_assert_eq!(refused(IpAddr::V6(v4.to_ipv6_mapped())), judged);
            let [a, b] = [(bits >> 16) as u16, bits as u16];
            let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, a, b);
            prop_assert_eq!(refused(IpAddr::V6(nat64)), judged);
            let six_to_four = Ipv6Addr::new(0x2002, a, b, 0, 0, 0, 0, 1);
            prop_assert_eq!(refused(IpAddr::V6(six_to_four)), judged);
        }
    }

    #[test]
    fn prefixes_match_scheme_host_port_and_whole_path_segments() {
        let prefix = Prefix::parse("http://127.0.0.1:9000/hooks").unwrap();
        for yes in [
            "http://127.0.0.1:9000/hooks",
            "http://127.0.0.1:9000/hooks/a?x=1",
            "http://user@127.0.0.1:9000/hooks/",
        ] {
            assert!(prefix.matches(&url(yes)), "{yes}");
        }
        for no in [
            "http://127.0.0.1.evil:9000/hooks",
            "http://127.0.0.1:9000@evil.example/hooks",
            "http://127.0.0.1:9001/hooks",
            "http://127.0.0.1/hooks",
            "https://127.0.0.1:9000/hooks",
            "http://127.0.0.2:9000/hooks",
            "http://127.0.0.1:9000/hooksa",
            "http://127.0.0.1:9000/hooks/../admin",
            "http://127.0.0.1:9000/",
        ] {
            assert!(!prefix.matches(&url(no)), "{no}");
        }
        assert!(Url::parse("http://127.0.0.1:9000.evil/hooks").is_err());
        // The default port is the scheme's; a host is compared as parsed.
        let https = Prefix::parse("https://Hooks.Example.org/").unwrap();
        assert!(https.matches(&url("https://hooks.example.org:443/a")));
        assert!(!https.matches(&url("https://hooks.example.org.evil/a")));
        let slash = Prefix::parse("http://[::1]:8080/in/").unwrap();
        assert!(slash.matches(&url("http://[0:0::1]:8080/in/x")));
        assert!(!slash.matches(&url("http://[::1]:8080/in")));
        for bad in [
            "ftp://x/",
            "hooks.example.org",
            "http://u:p@x/",
            "http://x/?a=1",
            "http://x/#f",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_list_allow_or_refuse_without_resolving() {
        let allowed = [Prefix::parse("http://127.0.0.1:9000/").unwrap()];
        assert_eq!(
            route(&allowed, &url("http://127.0.0.1:9000/hook")),
            Ok(Route::Listed)
        );
        assert_eq!(
            route(&allowed, &url("https://hooks.example.org/")),
            Ok(Route::Public)
        );
        assert_eq!(route(&allowed, &url("http://8.8.8.8/")), Ok(Route::Public));
        // The parser writes an address one way: this is 127.0.0.1.
        assert_eq!(
            route(&allowed, &url("http://2130706433:9000/")),
            Ok(Route::Listed)
        );
        for refused in [
            "http://127.0.0.1:9001/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:80/",
            "http://[::ffff:7f00:1]:9000/",
            "http://0x7f.1:9001/",
        ] {
            let why = route(&allowed, &url(refused)).unwrap_err();
            assert!(why.contains("--subscription-endpoints"), "{refused}: {why}");
        }
    }

    #[test]
    fn resolved_names_keep_their_public_addresses_only() {
        let at = |text: &str| SocketAddr::new(ip(text), 0);
        assert_eq!(
            public_only("mixed", vec![at("127.0.0.1"), at("8.8.8.8")]),
            Ok(vec![at("8.8.8.8")])
        );
        let why = public_only("localhost", vec![at("127.0.0.1"), at("::1")]).unwrap_err();
        assert!(why.contains("127.0.0.1 is a loopback address"), "{why}");
        assert!(public_only("none", vec![]).is_err());
    }

    #[tokio::test]
    async fn deliveries_follow_no_redirect() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = url(&format!("http://{}/hook", listener.local_addr().unwrap()));
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.read(&mut [0; 4096]);
            let moved = "HTTP/1.1 307 Temporary Redirect\r\nlocation: \
                http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\n\r\n";
            stream.write_all(moved.as_bytes()).unwrap();
        });
        let allowed = vec![Prefix::parse(endpoint.as_str()).unwrap()];
        let clients = Clients::new(allowed, Duration::from_secs(10)).unwrap();
        let client = clients.client(&endpoint).unwrap();
        let answer = client.post(endpoint.clone()).send().await.unwrap();
        assert_eq!(answer.status(), 307);
    }

    #[tokio::test]
    async fn writes_refuse_names_that_resolve_to_refused_addresses() {
        let why = check(&[], &url("http://localhost:1/")).await.unwrap_err();
        assert!(why.contains("loopback"), "{why}");
        let allowed = [Prefix::parse("http://localhost:1/").unwrap()];
        assert_eq!(
            check(&allowed, &url("http://localhost:1/hook")).await,
            Ok(())
        );
        // A name that does not resolve is accepted: its deliveries fail until it does.
        assert_eq!(check(&[], &url("http://nowhere.invalid/")).await, Ok(()));
    }
}
