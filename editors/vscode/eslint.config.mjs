import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
    { ignores: ["out/", "node_modules/", "test/e2e/"] },
    js.configs.recommended,
    ...tseslint.configs.strict,
    {
        rules: {
            eqeqeq: "error",
            "no-console": "error",
            "@typescript-eslint/no-floating-promises": "off",
        },
    },
);
