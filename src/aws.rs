//! AWS identities beyond the `[s3]` default: a pipeline's own region (a bucket in another
//! region) and a role assumed through STS, with an external id and a session name, for a
//! central logging account whose bucket other accounts write to.
//!
//! The role is assumed by the AWS SDK's STS provider, from the `[s3]` credentials (static keys
//! or the AWS chain: environment, profile, web identity for EKS IRSA and Pod Identity, container
//! and instance roles). Every client built from the returned configuration caches the role's
//! credentials and asks STS again before they expire (the SDK's identity cache); the OpenSearch
//! signer keeps its own cache with the same margin. STS is reached at the region's endpoint, or
//! where `AWS_ENDPOINT_URL_STS` points.

use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

/// A role to assume.
#[derive(Debug, Clone, Copy)]
pub struct Role<'a> {
    /// The role's ARN.
    pub arn: &'a str,
    /// The external id its trust policy requires, if any.
    pub external_id: Option<&'a str>,
    /// The session name (shown in CloudTrail as `assumed-role/<role>/<session>`).
    pub session_name: &'a str,
}

/// `base` with `region` and, when given, the credentials of `role` assumed from `base`'s.
pub async fn derive(base: &SdkConfig, region: Option<&str>, role: Option<Role<'_>>) -> SdkConfig {
    let mut conf = base.clone();
    if let Some(r) = region {
        conf = conf
            .into_builder()
            .region(Region::new(r.to_string()))
            .build();
    }
    if let Some(role) = role {
        let mut provider = AssumeRoleProvider::builder(role.arn)
            .session_name(role.session_name)
            .configure(base);
        if let Some(id) = role.external_id {
            provider = provider.external_id(id);
        }
        if let Some(r) = region {
            provider = provider.region(Region::new(r.to_string()));
        }
        let provider = provider.build().await;
        conf = conf
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
    }
    conf
}

/// Why `arn` is not an IAM role ARN (`arn:<partition>:iam::<12 digits>:role/<name>`).
pub fn role_arn_problem(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > 5;
    (!ok).then(|| format!("{arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/name)"))
}

/// Why `value` is not a valid STS external id (2 to 1224 of `[\w+=,.@:/-]`) or session name
/// (2 to 64 of `[\w+=,.@-]`), as STS checks them.
pub fn sts_string_problem(value: &str, max: usize, extra: &str) -> Option<String> {
    let ok = (2..=max).contains(&value.chars().count())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) || extra.contains(c));
    (!ok).then(|| format!("must be 2 to {max} characters of letters, digits and _+=,.@-{extra}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_and_sts_strings_are_checked_as_sts_does() {
        assert!(role_arn_problem("arn:aws:iam::123456789012:role/logs-reader").is_none());
        assert!(role_arn_problem("arn:aws-cn:iam::123456789012:role/path/r").is_none());
        assert!(role_arn_problem("arn:aws:iam::123456789012:user/bob").is_some());
        assert!(role_arn_problem("arn:aws:iam::1234:role/r").is_some());
        assert!(role_arn_problem("logs-reader").is_some());
        assert!(sts_string_problem("acme-7f3a", 1224, ":/").is_none());
        assert!(sts_string_problem("urn:acme/x", 1224, ":/").is_none());
        assert!(sts_string_problem("urn:acme", 64, "").is_some());
        assert!(sts_string_problem("x", 64, "").is_some());
        assert!(sts_string_problem(&"a".repeat(65), 64, "").is_some());
    }
}
