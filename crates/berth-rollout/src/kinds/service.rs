//! `v1` Service: ready at once, except type LoadBalancer, which waits for an address.

use crate::Readiness;
use crate::obj::{array, str_at};
use serde_json::Value;

pub(crate) fn readiness(s: &Value) -> Readiness {
    let type_ = str_at(s, &["spec", "type"]).unwrap_or("ClusterIP");
    if type_ != "LoadBalancer" {
        return Readiness::ready(format!("{type_} service"));
    }
    match lb_addresses(s) {
        Some(addresses) => Readiness::ready(format!("load balancer at {addresses}")),
        None => Readiness::progressing(
            "waiting for a load-balancer address (status.loadBalancer.ingress); a cluster without \
             a load-balancer implementation never assigns one",
        ),
    }
}

/// The addresses in `status.loadBalancer.ingress`, comma-separated, if any (shared with
/// Ingress, which has the same shape).
pub(crate) fn lb_addresses(obj: &Value) -> Option<String> {
    let addresses: Vec<&str> = array(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| str_at(i, &["ip"]).or_else(|| str_at(i, &["hostname"])))
        .collect();
    (!addresses.is_empty()).then(|| addresses.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_ip_is_ready_at_once() {
        let s = json!({"apiVersion": "v1", "kind": "Service",
                       "spec": {"clusterIP": "10.96.0.12", "ports": [{"port": 80}]},
                       "status": {"loadBalancer": {}}});
        assert_eq!(readiness(&s), Readiness::ready("ClusterIP service"));
    }

    #[test]
    fn load_balancer_waits_for_an_address() {
        let mut s = json!({"apiVersion": "v1", "kind": "Service",
                           "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}});
        assert!(matches!(readiness(&s), Readiness::Progressing { .. }));
        s["status"]["loadBalancer"]["ingress"] =
            json!([{"ip": "203.0.113.7", "ipMode": "VIP"}, {"hostname": "lb.example"}]);
        assert_eq!(
            readiness(&s),
            Readiness::ready("load balancer at 203.0.113.7, lb.example")
        );
    }
}
