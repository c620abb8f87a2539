//! `#[derive(Plain)]` for the `multiprocess` crate (use it as `multiprocess::Plain`, which
//! re-exports it).
//!
//! The derive writes the `unsafe impl Plain` (stored as itself: `type Bits = Self`) after
//! checking, at compile time, what makes it sound:
//!
//! - the type is a struct with `#[repr(C)]` or `#[repr(transparent)]` (a layout that does not
//!   change between builds), and no generic parameters;
//! - every field is `Plain` and stored as itself (`Plain<Bits = F>`: valid for every bit
//!   pattern, so numbers, arrays of them and other derived structs; not `bool` or `char`);
//! - no padding: the struct's size is the sum of its fields' sizes (padding bytes would be
//!   uninitialised, and another process may write any bytes there).
//!
//! Each failure is a compile error naming the type.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Fields};

/// Derives `multiprocess::Plain` for a `#[repr(C)]` (or `#[repr(transparent)]`) struct whose
/// fields are all plain and stored as themselves, with no padding. See the crate's docs.
#[proc_macro_derive(Plain)]
pub fn derive_plain(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The checks and the impl, or the first reason the type cannot be `Plain`.
fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let name = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        _ => {
            return Err(syn::Error::new(
                name.span(),
                "#[derive(Plain)] is for structs only (an enum or union is not valid for every bit pattern)",
            ))
        }
    };
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "#[derive(Plain)] does not take generic parameters (write the `unsafe impl` by hand)",
        ));
    }
    if !has_stable_layout(input)? {
        return Err(syn::Error::new(
            name.span(),
            format!("#[derive(Plain)] needs `#[repr(C)]` or `#[repr(transparent)]` on `{name}`"),
        ));
    }
    let types: Vec<_> = match fields {
        Fields::Named(f) => f.named.iter().map(|f| &f.ty).collect(),
        Fields::Unnamed(f) => f.unnamed.iter().map(|f| &f.ty).collect(),
        Fields::Unit => Vec::new(),
    };
    let field_checks = types.iter().map(|ty| {
        quote_spanned! {ty.span()=> __plain_field::<#ty>(); }
    });
    let padding_message = format!(
        "#[derive(Plain)]: `{name}` has padding bytes (reorder its fields, or add explicit ones)"
    );
    Ok(quote! {
        const _: () = {
            fn __plain_field<F: ::multiprocess::Plain<Bits = F>>() {}
            let _: fn() = || {
                #(#field_checks)*
            };
            assert!(
                ::core::mem::size_of::<#name>() == 0 #(+ ::core::mem::size_of::<#types>())*,
                #padding_message
            );
        };
        // SAFETY: checked above at compile time: a `repr(C)`/`repr(transparent)` struct without
        // padding whose fields are each valid for every bit pattern and hold no pointers
        // (`Plain<Bits = F>`), so the struct is too.
        unsafe impl ::multiprocess::Plain for #name {
            type Bits = #name;
            fn to_bits(self) -> #name {
                self
            }
            fn from_bits(bits: #name) -> #name {
                bits
            }
        }
    })
}

/// Whether the type says `#[repr(C)]` or `#[repr(transparent)]` (perhaps with more, such as
/// `align(8)`, whose padding the size check catches).
fn has_stable_layout(input: &DeriveInput) -> syn::Result<bool> {
    let mut stable = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                stable = true;
            } else if meta.input.peek(syn::token::Paren) {
                // align(N), packed(N): skip the argument.
                let content;
                syn::parenthesized!(content in meta.input);
                let _: Tokens = content.parse()?;
            }
            Ok(())
        })?;
    }
    Ok(stable)
}
