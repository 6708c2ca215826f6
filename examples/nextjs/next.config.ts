import type { NextConfig } from 'next';

const nextConfig: NextConfig = {
  // pg is a Node.js package: loaded at run time by the server, not bundled.
  serverExternalPackages: ['pg'],
  // This folder is the app's root, whatever lockfiles lie above it.
  turbopack: { root: __dirname },
};

export default nextConfig;
