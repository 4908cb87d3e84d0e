//! The server's CAs and certificates, the token's CA hash, and the TLS configurations.
//!
//! Layout as k3s keeps it (`pkg/daemons/control/deps/deps.go`, under `<data-dir>/server/tls/`):
//! `server-ca.crt`/`.key` signing `serving-kube-apiserver.crt`/`.key` (CN `kube-apiserver`),
//! `client-ca.crt`/`.key` signing `client-admin.crt`/`.key` (`system:admin`) and the kubelets'
//! client certificates. The files are made on the first start and reused afterwards, so a re-imaged server whose
//! data-dir is on the SSD keeps its CA, and with it every token's CA hash. Keys are P-256,
//! written as SEC1 `EC PRIVATE KEY` PEM like k3s's.

use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// The pure-Rust crypto provider every TLS configuration here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls_rustcrypto::provider())
}

/// A fresh P-256 key from the OS's random generator.
pub fn new_key() -> Result<p256::SecretKey, String> {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("random bytes: {e}"))?;
        // Out of range with probability ~2^-32; draw again then.
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            return Ok(k);
        }
    }
}

fn key_pem(key: &p256::SecretKey) -> Result<String, String> {
    key.to_sec1_pem(p256::pkcs8::LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| format!("encoding a key: {e}"))
}

fn load_key(path: &Path) -> Result<p256::SecretKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    p256::SecretKey::from_sec1_pem(&text)
        .map_err(|e| format!("{}: not a P-256 key: {e}", path.display()))
}

/// An rcgen key pair that signs with RustCrypto's ECDSA (rcgen's own backends compile C).
struct EcKey {
    key: p256::ecdsa::SigningKey,
    public: Vec<u8>,
}

impl rcgen::RemoteKeyPair for EcKey {
    fn public_key(&self) -> &[u8] {
        &self.public
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn key_pair(key: &p256::SecretKey) -> Result<rcgen::KeyPair, String> {
    let public = key.public_key().to_encoded_point(false).as_bytes().to_vec();
    rcgen::KeyPair::from_remote(Box::new(EcKey {
        key: p256::ecdsa::SigningKey::from(key),
        public,
    }))
    .map_err(|e| format!("key pair: {e}"))
}

/// RFC 7093 method 1 (what rcgen does with its crypto backends): SHA-256 of the key, 20 bytes.
fn key_id(kp: &rcgen::KeyPair) -> Vec<u8> {
    Sha256::digest(kp.public_key_der())[..20].to_vec()
}

/// A random positive 127-bit serial (rcgen picks none without its crypto backend).
fn random_serial() -> Result<rcgen::SerialNumber, String> {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| format!("random bytes: {e}"))?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    Ok(rcgen::SerialNumber::from_slice(&serial))
}

/// The CA's parameters. They are a function of its key alone, so the issuer can be rebuilt
/// from its `.key` on a later start to sign new certificates. (k3s names its CAs
/// `k3s-server-ca@<unix time>`; here the suffix is the key id.)
fn ca_params(prefix: &str, kp: &rcgen::KeyPair) -> Result<rcgen::CertificateParams, String> {
    let id = key_id(kp);
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{prefix}@{}", hex::encode(&id[..5])),
    );
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(id);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(3650);
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

/// A CA: its certificate as on disk and its key.
pub struct Ca {
    /// `NAME.crt` as it is on disk.
    pub pem: String,
    /// `NAME.key`.
    pub key: p256::SecretKey,
    /// The CN prefix (`k3s-server-ca`, `k3s-client-ca`).
    prefix: &'static str,
}

/// What a leaf certificate is for.
pub struct Leaf<'a> {
    /// Subject CN.
    pub cn: &'a str,
    /// Subject O, if any.
    pub org: Option<&'a str>,
    /// DNS names and IP literals.
    pub names: &'a [String],
    /// Client (true) or server (false) authentication.
    pub client: bool,
}

impl Ca {
    /// Loads `tls_dir/NAME.crt`/`.key`, or makes them (self-signed) when they are missing:
    /// `deps.go` createSigningCertKey.
    fn ensure(tls_dir: &Path, name: &str, prefix: &'static str) -> Result<Ca, String> {
        let crt = tls_dir.join(format!("{name}.crt"));
        let key_path = tls_dir.join(format!("{name}.key"));
        if crt.exists() && key_path.exists() {
            let pem =
                std::fs::read_to_string(&crt).map_err(|e| format!("{}: {e}", crt.display()))?;
            eprintln!(
                "k3s (stand-in): reusing the cluster CA {name} in {}",
                crt.display()
            );
            return Ok(Ca {
                pem,
                key: load_key(&key_path)?,
                prefix,
            });
        }
        let key = new_key()?;
        let kp = key_pair(&key)?;
        let cert = ca_params(prefix, &kp)?
            .self_signed(&kp)
            .map_err(|e| format!("making the {name}: {e}"))?;
        write_new(&key_path, &key_pem(&key)?, 0o600)?;
        write_new(&crt, &cert.pem(), 0o644)?;
        eprintln!(
            "k3s (stand-in): made a new cluster CA {name} in {}",
            crt.display()
        );
        Ok(Ca {
            pem: cert.pem(),
            key,
            prefix,
        })
    }

    /// A certificate for `key`, signed by this CA (PEM).
    pub fn sign(&self, what: &Leaf<'_>, key: &p256::SecretKey) -> Result<String, String> {
        let ca_kp = key_pair(&self.key)?;
        let ca = ca_params(self.prefix, &ca_kp)?
            .self_signed(&ca_kp)
            .map_err(|e| format!("rebuilding the CA issuer: {e}"))?;
        let kp = key_pair(key)?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, what.cn);
        if let Some(o) = what.org {
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, o);
        }
        for n in what.names {
            p.subject_alt_names.push(match n.parse::<IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => rcgen::SanType::DnsName(
                    n.clone()
                        .try_into()
                        .map_err(|e| format!("{n}: not a DNS name: {e}"))?,
                ),
            });
        }
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![if what.client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_id(&kp));
        p.serial_number = Some(random_serial()?);
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(365);
        let cert = p
            .signed_by(&kp, &ca, &ca_kp)
            .map_err(|e| format!("signing a certificate for {}: {e}", what.cn))?;
        Ok(cert.pem())
    }

    /// A new key and its certificate, answered as k3s does for the kubelet's certificates
    /// (`pkg/server/router.go` servingKubeletCert / clientKubeletCert): the certificate, the
    /// CA, then the key.
    pub fn issue(&self, what: &Leaf<'_>) -> Result<String, String> {
        let key = new_key()?;
        let cert = self.sign(what, &key)?;
        Ok(format!("{cert}{}{}", self.pem, key_pem(&key)?))
    }
}

/// What the server serves TLS with.
pub struct ServerPki {
    /// `server-ca`: signs the serving certificates; `/cacerts` answers its file as it is on
    /// disk, and the token hash covers those bytes.
    pub server_ca: Ca,
    /// `client-ca`: signs client certificates (admin, kubelets), the only ones the API takes.
    pub client_ca: Ca,
    /// `serving-kube-apiserver.crt` then the server CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// `serving-kube-apiserver.key`.
    pub key: PrivateKeyDer<'static>,
    /// `client-admin.crt` and `.key` (PEM), what `k3s.yaml` carries.
    pub admin: (String, String),
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    crate::write_mode(path, text, mode)
}

/// A SEC1 or PKCS #8 PEM key as rustls-rustcrypto takes it (PKCS #8: it does not take SEC1).
pub fn rustls_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let key = p256::SecretKey::from_sec1_pem(pem)
        .or_else(|_| p256::SecretKey::from_pkcs8_pem(pem))
        .map_err(|e| format!("not a P-256 key: {e}"))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| format!("encoding a key: {e}"))?;
    Ok(PrivateKeyDer::Pkcs8(der.as_bytes().to_vec().into()))
}

/// Makes (first start) or loads (later starts) the CAs and certificates under `tls_dir`
/// (`deps.go` genServerCerts, genClientCerts). The serving certificate is signed again
/// (same key) when it no longer covers every name in `names` or has expired (`deps.go`
/// createClientCertKey: `expired` or `fieldsChanged`).
pub fn ensure_server(tls_dir: &Path, names: &[String]) -> Result<ServerPki, String> {
    let server_ca = Ca::ensure(tls_dir, "server-ca", "k3s-server-ca")?;
    let client_ca = Ca::ensure(tls_dir, "client-ca", "k3s-client-ca")?;
    let ca_der = parse_certs(&server_ca.pem)?;
    let crt = tls_dir.join("serving-kube-apiserver.crt");
    let key_path = tls_dir.join("serving-kube-apiserver.key");
    let key = if key_path.exists() {
        load_key(&key_path)?
    } else {
        let k = new_key()?;
        write_new(&key_path, &key_pem(&k)?, 0o600)?;
        k
    };
    let current = std::fs::read_to_string(&crt)
        .ok()
        .and_then(|pem| parse_certs(&pem).ok())
        .filter(|c| !c.is_empty() && covers(&server_ca.pem, &c[0], names));
    let leaf_der = match current {
        Some(mut c) => c.remove(0),
        None => {
            let what = Leaf {
                cn: "kube-apiserver",
                org: None,
                names,
                client: false,
            };
            let pem = server_ca.sign(&what, &key)?;
            write_new(&crt, &pem, 0o644)?;
            eprintln!(
                "k3s (stand-in): serving certificate for {} in {}",
                names.join(", "),
                crt.display()
            );
            parse_certs(&pem)?.remove(0)
        }
    };
    let mut chain = vec![leaf_der];
    chain.extend(ca_der);
    let key_der = rustls_key(&key_pem(&key)?)?;

    // The admin's client certificate (`deps.go` genClientCerts: `system:admin`, O
    // `system:masters`), made once and reused.
    let admin_crt = tls_dir.join("client-admin.crt");
    let admin_key = tls_dir.join("client-admin.key");
    let admin = match (
        std::fs::read_to_string(&admin_crt),
        std::fs::read_to_string(&admin_key),
    ) {
        (Ok(c), Ok(k)) => (c, k),
        _ => {
            let k = new_key()?;
            let what = Leaf {
                cn: "system:admin",
                org: Some("system:masters"),
                names: &[],
                client: true,
            };
            let c = client_ca.sign(&what, &k)?;
            write_new(&admin_key, &key_pem(&k)?, 0o600)?;
            write_new(&admin_crt, &c, 0o644)?;
            (c, key_pem(&k)?)
        }
    };
    Ok(ServerPki {
        server_ca,
        client_ca,
        chain,
        key: key_der,
        admin,
    })
}

/// Whether `leaf` chains to the CA, is in date, and is valid for every name.
fn covers(ca_pem: &str, leaf: &CertificateDer<'static>, names: &[String]) -> bool {
    let Ok(verifier) = verifier_for(ca_pem) else {
        return false;
    };
    names.iter().all(|n| {
        ServerName::try_from(n.clone()).is_ok_and(|sn| {
            verifier
                .verify_server_cert(leaf, &[], &sn, &[], UnixTime::now())
                .is_ok()
        })
    })
}

/// Every certificate in a PEM bundle.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))
}

/// `pkg/clientaccess/token.go` hashCA: with one certificate in the bundle, the SHA-256 of the
/// file's literal bytes (the root's DER when there are several; not needed here: our bundle
/// is the one self-signed CA).
pub fn hash_ca(bundle: &[u8]) -> String {
    hex::encode(Sha256::digest(bundle))
}

/// Client certificates signed by the client CA authenticate; none at all is let through the
/// handshake too (agents joining, `/cacerts`), and the handlers refuse it where the API needs
/// credentials.
fn client_verifier(
    client_ca_pem: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for c in parse_certs(client_ca_pem)? {
        roots
            .add(c)
            .map_err(|e| format!("client CA not usable: {e}"))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("TLS client verifier: {e}"))
}

/// The server's TLS configuration.
pub fn server_config(pki: &ServerPki) -> Result<Arc<ServerConfig>, String> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(client_verifier(&pki.client_ca.pem)?)
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .map(Arc::new)
        .map_err(|e| format!("TLS serving certificate: {e}"))
}

fn verifier_for(ca_pem: &str) -> Result<Arc<rustls::client::WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for c in parse_certs(ca_pem)? {
        roots
            .add(c)
            .map_err(|e| format!("CA certificate not usable: {e}"))?;
    }
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("TLS verifier: {e}"))
}

/// A client that trusts exactly the CA bundle `ca_pem` and checks the server's name, as
/// `clientaccess.GetHTTPClient` and kubectl do.
pub fn client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, String> {
    client_config_as(ca_pem, None)
}

/// [`client_config`] presenting a client certificate (PEM certificate and key).
pub fn client_config_as(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, String> {
    let verifier = verifier_for(ca_pem)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_webpki_verifier(verifier);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(parse_certs(cert)?, rustls_key(key)?)
            .map_err(|e| format!("client certificate: {e}"))?,
    };
    Ok(Arc::new(config))
}

/// A client that accepts any server certificate (the handshake's signatures are still
/// checked): `insecureClient` in `pkg/clientaccess/token.go`, used only to GET `/cacerts`.
pub fn insecure_client_config() -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    ))
}

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
