// CSS imported from TypeScript is bundled by esbuild into console.css.
declare module '*.css';
