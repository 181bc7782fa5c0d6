//! The AWS SDK's configuration, shared by IAM sign-in and the S3 reads of exports: the
//! standard credential chain (environment, `AWS_PROFILE` and the shared files, web identity,
//! instance or container role), HTTPS through rustls with ring (no aws-lc, no OpenSSL), and
//! bounded timeouts.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// How long an AWS API connection may take to open, and one attempt to answer (the SDK
/// retries throttling and 5xx itself); an attempt may be a 64 MB part file.
const AWS_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The region when neither the configuration nor the chain names one.
const FALLBACK_REGION: &str = "us-east-1";

/// One SDK configuration per region and endpoint, kept for the process: it holds the
/// credential chain's cache, so role credentials are not fetched again for every session or
/// file. `None` region: the chain's (`AWS_REGION`, the profile), else us-east-1.
pub async fn sdk_config(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    type Configs = tokio::sync::Mutex<HashMap<(Option<String>, Option<String>), SdkConfig>>;
    static CONFIGS: OnceLock<Configs> = OnceLock::new();
    let mut configs = CONFIGS.get_or_init(Configs::default).lock().await;
    let key = (region.map(str::to_string), endpoint_url.map(str::to_string));
    if let Some(config) = configs.get(&key) {
        return config.clone();
    }
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(AWS_CONNECT_TIMEOUT)
        .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
        .build();
    let loader = |region: Option<&str>| {
        let mut loader = aws_config::defaults(BehaviorVersion::v2026_01_12())
            .http_client(http_client.clone())
            .timeout_config(timeouts.clone());
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_string()));
        }
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader
    };
    // Without a region the loader asks its own chain (environment, profile, instance
    // metadata: through the client above); if that finds none, the fallback.
    let mut config = loader(region).load().await;
    if config.region().is_none() {
        config = loader(Some(FALLBACK_REGION)).load().await;
    }
    configs.insert(key, config.clone());
    config
}
