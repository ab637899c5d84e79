// Documents shared by the spec model's tests.
#pragma once

// The example of DESIGN.md, "The container spec".
inline const char *const kDesignYaml = R"(apiVersion: v1
kind: VirtualRoot
metadata: { name: mobile-app-env, namespace: production }
spec:
  image: mobileops/android-runtime:latest
  resources:
    requests: { cpu: "0.5", memory: "1Gi", storage: "5Gi" }
    limits:   { cpu: "2",   memory: "4Gi", storage: "20Gi" }
  security: { runAsUser: 1000, runAsGroup: 1000, readOnlyRootFilesystem: true,
              allowPrivilegeEscalation: false }
  networking: { mode: bridge, ports: [ { containerPort: 8080, hostPort: 8080 } ] }
  volumes:
    - { name: app-data, hostPath: /var/lib/mobileops/data, containerPath: /app/data }
    - { name: config, configMap: app-config, containerPath: /app/config, readOnly: true }
  environment: [ { name: ENV, value: production } ]
)";
