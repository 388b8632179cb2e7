// Swagger UI's initialiser. A file of its own, not an inline script, so the docs page runs under a
// Content-Security-Policy with script-src 'self' only (service/api/routes_docs.py).
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  displayRequestDuration: true,
  showCommonExtensions: true,
  // Swagger UI would otherwise fetch a badge from validator.swagger.io: nothing may leave the origin.
  validatorUrl: null,
});
