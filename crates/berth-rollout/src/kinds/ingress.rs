//! `networking.k8s.io/v1` Ingress: ready once it exists; see the crate docs for why.

use super::service::lb_addresses;
use crate::Readiness;
use serde_json::Value;

pub(crate) fn readiness(i: &Value) -> Readiness {
    Readiness::ready(match lb_addresses(i) {
        Some(addresses) => format!("served at {addresses}"),
        None => "no address published yet (many ingress controllers never publish one)".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_with_or_without_an_address() {
        let mut i = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                           "spec": {"ingressClassName": "nginx"}, "status": {"loadBalancer": {}}});
        assert!(
            readiness(&i)
                .message()
                .starts_with("no address published yet")
        );
        i["status"]["loadBalancer"]["ingress"] = json!([{"ip": "192.0.2.10"}]);
        assert_eq!(readiness(&i), Readiness::ready("served at 192.0.2.10"));
    }
}
