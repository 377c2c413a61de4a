import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// Every asset lands under /assets/ with a content hash; the hub embeds them all (no CDN).
export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
    // no inline data: URLs for scripts, so the page's policy can stay script-src 'self'
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
