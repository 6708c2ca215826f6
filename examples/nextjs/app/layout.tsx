import type { Metadata } from 'next';
import './globals.css';

export const metadata: Metadata = {
  title: 'Billing',
  description: 'OpenAI and AWS costs, computed in PostgreSQL by the billing extension',
};

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en">
      <body className="bg-gray-50 text-gray-900 antialiased">{children}</body>
    </html>
  );
}
